package manager

import (
	"sync"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestChangesOnFilesAtOnce: a registration on one file runs while one on
// another file is held in its Watch (the world attaching its processes):
// changes to different files are not serialised (they all were, by one
// mutex, until the file locks). The held one then completes too.
func TestChangesOnFilesAtOnce(t *testing.T) {
	a, b := testfix.Target(t), testfix.Target(t)
	m, w, ka := newMgrOn(t, a, nil, nil)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.OnWatch = func(in *rmap.Inode) {
		if in.Key == ka {
			once.Do(func() { close(held) })
			<-release
		}
	}
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	errA := make(chan error, 1)
	go func() { errA <- m.Write(Root, a, []byte("pa=tick\n")) }()
	<-held
	errB := make(chan error, 1)
	go func() { errB <- m.Write(Root, b, []byte("pb=tick\n")) }()
	select {
	case err := <-errB:
		if err != nil {
			t.Fatalf("write on b: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write on another file waited for the one held in its Watch")
	}
	close(release)
	if err := <-errA; err != nil {
		t.Fatalf("write on a: %v", err)
	}
	if n := len(m.All()); n != 2 {
		t.Errorf("%d probes, want 2", n)
	}
}

// TestProbeLimitAcrossFiles: writes on many files at once never make more
// probes than the limit between them (each reserves its room first).
func TestProbeLimitAcrossFiles(t *testing.T) {
	const files, limit = 8, 10
	var paths []string
	for range files {
		paths = append(paths, testfix.Target(t))
	}
	m, _, _ := newMgrOn(t, paths[0], nil, nil)
	m.maxProbes = limit
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Go(func() {
			m.Write(Root, p, []byte("p1=tick\np2=tock\np3=main\n")) // ENOSPC for some
		})
	}
	wg.Wait()
	if n := len(m.All()); n > limit || n != limit-limit%3 {
		t.Errorf("%d probes after %d writes of 3 at once, limit %d: want %d", n, files, limit, limit-limit%3)
	}
}
