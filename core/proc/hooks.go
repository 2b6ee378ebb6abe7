//go:build !planted

package proc

// worldTestHooks is empty in production: the planted bugs of the tests
// exist only with the "planted" build tag (hooks_planted.go).
type worldTestHooks struct{}

func (*worldTestHooks) plantedPokeAsRequest() bool { return false }
