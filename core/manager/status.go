package manager

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/uprobefs/uprobefs/core/probes"
)

// Status returns the status lines of probe p as caller c may see them: one
// line per process that maps the file, "pid=P vaddr=0xV installed" where the
// engine has the breakpoint, "pid=P vaddr=0xV pending" where it maps the
// offset but the breakpoint is not (yet) in, and "pid=P skipped: REASON" for a
// process the world could not trace (REASON escaped by EscapeText). A caller
// other than root sees only its own processes.
func (m *Manager) Status(p *Probe, c Caller) string {
	var b strings.Builder
	b.WriteString(p.returnMode())
	in := m.inodes.Get(p.Key)
	var sites []probes.Site
	m.eng.Sites(in, p.probeOff(), func(s probes.Site) bool {
		sites = append(sites, s)
		return true
	})
	slices.SortFunc(sites, func(a, b probes.Site) int {
		if a.MM.ID != b.MM.ID {
			return cmp.Compare(a.MM.ID, b.MM.ID)
		}
		return cmp.Compare(a.Vaddr, b.Vaddr)
	})
	for _, s := range sites {
		if !visibleTo(c, s.MM.ID) {
			continue
		}
		state := "pending"
		if s.Installed {
			state = "installed"
		}
		fmt.Fprintf(&b, "pid=%d vaddr=%#x %s\n", s.MM.ID, s.Vaddr, state)
	}
	if sk, ok := m.world.(WorldSkipper); ok {
		for _, s := range sk.Skipped(in) {
			if visibleTo(c, s.Pid) {
				fmt.Fprintf(&b, "pid=%d skipped: %s\n", s.Pid, EscapeText(s.Reason))
			}
		}
	}
	return b.String()
}
