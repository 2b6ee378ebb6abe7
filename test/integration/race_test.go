//go:build race

package integration

// raceEnabled: the uprobefs command under test is built with -race too.
const raceEnabled = true
