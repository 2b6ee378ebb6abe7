//go:build planted

package probes

import "github.com/uprobefs/uprobefs/core/rmap"

// TestHooks exposes engineTestHooks to the external test package.
type TestHooks struct {
	SkipMunmapSync         bool // planted bug 1
	IMapBeforeMmapSem      bool // planted bug 2
	DeleteWithoutMmapMutex bool // planted bug 3
	SyncUnderMmapSem       bool // planted bug 4

	WalkBeforeMmapSem func(v *rmap.VMA)
	MmapCollected     func(v *rmap.VMA)
	BeforeDelete      func(u *Uprobe)
}

// SetTestHooks installs h on e. Call it before e is used.
func SetTestHooks(e *Engine, h TestHooks) {
	e.test = engineTestHooks{
		skipMunmapSync:         h.SkipMunmapSync,
		imapBeforeMmapSem:      h.IMapBeforeMmapSem,
		deleteWithoutMmapMutex: h.DeleteWithoutMmapMutex,
		syncUnderMmapSem:       h.SyncUnderMmapSem,
		walkBeforeMmapSem:      h.WalkBeforeMmapSem,
		mmapCollected:          h.MmapCollected,
		beforeDelete:           h.BeforeDelete,
	}
}
