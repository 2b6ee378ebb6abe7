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
// engine has the breakpoint (in a world that tells how it is hit,
// WorldJumps: "pid=P vaddr=0xV jump" for a jump site, "pid=P vaddr=0xV
// trap: REASON" for a trap), "pid=P vaddr=0xV pending" where it maps the
// offset but the breakpoint is not (yet) in, and "pid=P skipped: REASON" for a
// process the world could not trace (REASON escaped by EscapeText). A caller
// other than root sees only its own processes.
func (m *Manager) Status(p *Probe, c Caller) string {
	var b strings.Builder
	b.WriteString(p.returnMode())
	in := m.inodes.Get(p.Key)
	type site struct {
		probes.Site
		mode string
	}
	var sites []site
	wj, _ := m.world.(WorldJumps)
	m.eng.Sites(in, p.probeOff(), func(s probes.Site) bool {
		st := site{Site: s, mode: "pending"}
		if s.Installed {
			st.mode = "installed"
			if wj != nil {
				if md := wj.SiteMode(s.MM, s.Vaddr); md != "" {
					st.mode = md
				}
			}
		}
		sites = append(sites, st)
		return true
	})
	slices.SortFunc(sites, func(a, b site) int {
		if a.MM.ID != b.MM.ID {
			return cmp.Compare(a.MM.ID, b.MM.ID)
		}
		return cmp.Compare(a.Vaddr, b.Vaddr)
	})
	for _, s := range sites {
		if !visibleTo(c, s.MM.ID) {
			continue
		}
		fmt.Fprintf(&b, "pid=%d vaddr=%#x %s\n", s.MM.ID, s.Vaddr, EscapeText(s.mode))
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
