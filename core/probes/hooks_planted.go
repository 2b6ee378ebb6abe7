//go:build planted

package probes

import "github.com/uprobefs/uprobefs/core/rmap"

// engineTestHooks are the planted bugs (each must be caught by the tests:
// go test -tags planted -run Planted) and hooks that force an interleaving.
// They exist only in binaries built with the "planted" tag (hooks.go is the
// production version: no fields, no-op methods the compiler removes). They
// are read without synchronization and must be set before the engine is
// used (SetTestHooks, export_planted_test.go).
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
	// syncUnderMmapSem plants bug 4: MunmapHook waits for the grace period
	// itself, under mmap_sem, as the seed's munmap_uprobe does.
	syncUnderMmapSem bool

	// walkBeforeMmapSem runs in a register/unregister walk before it
	// takes the mmap_sem of the temp-list entry for v.
	walkBeforeMmapSem func(v *rmap.VMA)
	// mmapCollected runs in MmapHook once the pending list is built.
	mmapCollected func(v *rmap.VMA)
	// beforeDelete runs in unregister just before delete_uprobe.
	beforeDelete func(u *Uprobe)
}

func (h *engineTestHooks) plantedSkipMunmapSync() bool         { return h.skipMunmapSync }
func (h *engineTestHooks) plantedIMapBeforeMmapSem() bool      { return h.imapBeforeMmapSem }
func (h *engineTestHooks) plantedDeleteWithoutMmapMutex() bool { return h.deleteWithoutMmapMutex }
func (h *engineTestHooks) plantedSyncUnderMmapSem() bool       { return h.syncUnderMmapSem }

func (h *engineTestHooks) onWalkBeforeMmapSem(v *rmap.VMA) {
	if h.walkBeforeMmapSem != nil {
		h.walkBeforeMmapSem(v)
	}
}

func (h *engineTestHooks) onMmapCollected(v *rmap.VMA) {
	if h.mmapCollected != nil {
		h.mmapCollected(v)
	}
}

func (h *engineTestHooks) onBeforeDelete(u *Uprobe) {
	if h.beforeDelete != nil {
		h.beforeDelete(u)
	}
}
