// gotarget: the Go program the tests probe by package-path symbols. It
// loops for ever: pkg.Tick() every round, (*pkg.T).Tock() every other
// round, one heartbeat byte "." on stdout every 10 rounds, 2 ms apart (the
// protocol of target.c).
package main

import (
	"os"
	"time"

	"example.com/gofix/pkg"
)

func main() {
	var t pkg.T
	for i := 0; ; i++ {
		pkg.Tick()
		if i%2 == 0 {
			t.Tock()
		}
		if i%10 == 0 {
			if _, err := os.Stdout.Write([]byte(".")); err != nil {
				os.Exit(1)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}
