package probes_test

import (
	"fmt"
	"testing"

	"github.com/uprobefs/uprobefs/core/probes"
)

// BenchmarkRegisterUnregister: one Register and one Unregister of a uprobe
// on an inode mapped by n simulated MMs (a breakpoint written and restored
// in each).
func BenchmarkRegisterUnregister(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("mms=%d", n), func(b *testing.B) {
			f := newFixture(b)
			a := f.file(1, 1)
			for i := 0; i < n; i++ {
				mustMmap(b, f.w.Spawn(), a, 0x10000, 0, ps, true)
			}
			c := &probes.Consumer{}
			b.ResetTimer()
			for b.Loop() {
				if err := f.eng.Register(a.Inode, 0x10, a.Data[0x10:0x11], nil, c); err != nil {
					b.Fatal(err)
				}
				if err := f.eng.Unregister(a.Inode, 0x10, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMmapHook: MmapHook on a VMA of an inode with no probes (the
// uprobes_count bail-out), and with 100 probes in range (all present
// already: the walk, 100 verify-opcode reads, EEXIST).
func BenchmarkMmapHook(b *testing.B) {
	for _, n := range []int{0, 100} {
		b.Run(fmt.Sprintf("probes=%d", n), func(b *testing.B) {
			f := newFixture(b)
			a := f.file(1, 1)
			p := f.w.Spawn()
			v := mustMmap(b, p, a, 0x10000, 0, ps, true)
			for i := 0; i < n; i++ {
				off := uint64(i * 16)
				f.register(b, a, off, &probes.Consumer{})
			}
			p.MM.MmapSem.Lock()
			defer p.MM.MmapSem.Unlock()
			b.ResetTimer()
			for b.Loop() {
				if err := f.eng.MmapHook(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMmapMunmap100: a full simulated mmap+munmap of a page with 100
// probes (fresh installs each time).
func BenchmarkMmapMunmap100(b *testing.B) {
	f := newFixture(b)
	a := f.file(1, 1)
	p := f.w.Spawn()
	for i := 0; i < 100; i++ {
		f.register(b, a, uint64(i*16), &probes.Consumer{})
	}
	for b.Loop() {
		mustMmap(b, p, a, 0x10000, 0, ps, true)
		if err := p.Munmap(0x10000); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupLocked: the hit path lookup (must not allocate).
func BenchmarkLookupLocked(b *testing.B) {
	f := newFixture(b)
	a := f.file(1, 1)
	p := f.w.Spawn()
	mustMmap(b, p, a, 0x10000, 0, ps, true)
	f.register(b, a, 0x10, &probes.Consumer{})
	p.MM.MmapSem.RLock()
	defer p.MM.MmapSem.RUnlock()
	b.ReportAllocs()
	for b.Loop() {
		if f.eng.LookupLocked(p.MM, 0x10010) == nil {
			b.Fatal("miss")
		}
	}
}
