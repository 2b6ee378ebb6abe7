//go:build !planted

package probes

import "github.com/uprobefs/uprobefs/core/rmap"

// engineTestHooks is empty in production: the planted bugs and the
// interleaving hooks of the tests exist only with the "planted" build tag
// (hooks_planted.go). These methods are constant and inlined away.
type engineTestHooks struct{}

func (*engineTestHooks) plantedSkipMunmapSync() bool         { return false }
func (*engineTestHooks) plantedIMapBeforeMmapSem() bool      { return false }
func (*engineTestHooks) plantedDeleteWithoutMmapMutex() bool { return false }
func (*engineTestHooks) plantedSyncUnderMmapSem() bool       { return false }
func (*engineTestHooks) onWalkBeforeMmapSem(*rmap.VMA)       {}
func (*engineTestHooks) onMmapCollected(*rmap.VMA)           {}
func (*engineTestHooks) onBeforeDelete(*Uprobe)              {}
