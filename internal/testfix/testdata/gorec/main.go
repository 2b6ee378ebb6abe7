// gorec: the Go fixture of the Go return-probe test. Four goroutines (on
// two threads) each run rec(200) N times: a recursion deep enough, with
// frames big enough, to grow (copy) their stacks many times. It prints
// "gorec N returns R sum S": R calls of rec, all of which return.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
)

//go:noinline
func rec(d int, pad [64]byte) int {
	if d == 0 {
		return int(pad[0])
	}
	var big [256]byte
	big[d%256] = byte(d)
	return rec(d-1, pad) + int(big[d%256]&1)
}

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	runtime.GOMAXPROCS(2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				s := rec(200, [64]byte{})
				mu.Lock()
				total += s
				mu.Unlock()
				runtime.GC() // stacks shrink: they grow (move) again
			}
		}()
	}
	wg.Wait()
	fmt.Println("gorec", n, "returns", 4*n*201, "sum", total)
}
