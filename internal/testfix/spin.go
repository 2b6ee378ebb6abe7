package testfix

import "sync"

// Spin starts n goroutines that each call f (with its number, 0 to n-1)
// again and again until stop is called, the load a concurrency test keeps
// up while it does its own work. stop returns once every goroutine has
// returned; it must be called exactly once. f is one iteration: it must
// return promptly.
func Spin(n int, f func(i int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
					f(i)
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}
