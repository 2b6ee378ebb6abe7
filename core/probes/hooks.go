package probes

import "github.com/uprobefs/uprobefs/core/rmap"

// engineTestHooks are test-only knobs of an Engine, set through
// export_test.go: planted bugs (each must be caught by the tests) and
// hooks that force an interleaving. All zero in production; they are read
// without synchronization and must be set before the engine is used.
type engineTestHooks struct {
	// skipMunmapSync plants bug 1: MunmapHook makes the VMA reusable
	// without waiting for an srcu grace period.
	skipMunmapSync bool
	// imapBeforeMmapSem plants bug 2: walks take i_mmap_mutex before
	// mmap_sem.
	imapBeforeMmapSem bool
	// deleteWithoutMmapMutex plants bug 3: delete_uprobe without
	// uprobes_mmap_mutex.
	deleteWithoutMmapMutex bool

	// walkBeforeMmapSem runs in a register/unregister walk before it
	// takes the mmap_sem of the temp-list entry for v.
	walkBeforeMmapSem func(v *rmap.VMA)
	// mmapCollected runs in MmapHook once the pending list is built.
	mmapCollected func(v *rmap.VMA)
	// beforeDelete runs in unregister just before delete_uprobe.
	beforeDelete func(u *Uprobe)
}
