package manager

import (
	"strconv"
	"strings"

	"github.com/uprobefs/uprobefs/core/objfile"
)

// Quoted locations ("github.com/x/y.F", "github.com/x/y.F"+0x10): symbols
// that the plain SYMBOL form cannot name (objfile.SplitQuoted), chiefly Go
// symbols with their import path. The grammar (parse.go) hands a location
// starting with '"' to these helpers.

// checkQuotedLocation reports why the quoted location loc is malformed, or
// nil.
func checkQuotedLocation(loc string) error {
	_, _, err := objfile.SplitQuoted(loc)
	return err
}

// canonicalQuoted is the canonical form of the quoted location loc (which
// checkQuotedLocation accepted): the quotes dropped if the symbol is a plain
// one ("main.main" -> main.main), else the symbol quoted by strconv.Quote;
// +OFF as lowercase hex, +0 dropped.
func canonicalQuoted(loc string) string {
	sym, rel, err := objfile.SplitQuoted(loc)
	if err != nil {
		return loc
	}
	s := strconv.Quote(sym)
	if plainSymbol(sym) {
		s = sym
	}
	if rel != 0 {
		s += "+0x" + strconv.FormatUint(rel, 16)
	}
	return s
}

// plainSymbol reports whether sym can be written unquoted: what the plain
// SYMBOL form accepts (no leading digit or '-', no '+', '/', ':', '=', '"',
// white space or control characters).
func plainSymbol(sym string) bool {
	if sym == "" || (sym[0] >= '0' && sym[0] <= '9') || sym[0] == '-' {
		return false
	}
	for i := 0; i < len(sym); i++ {
		if c := sym[i]; c <= ' ' || c == 0x7f || strings.IndexByte(`+/:="\`, c) >= 0 {
			return false
		}
	}
	return true
}

// defaultName is the name of a probe at the canonical location loc when the
// line gives none: loc itself, except for a quoted symbol, whose name drops
// the quotes and the import path's directories — everything up to the last
// '/' before any '[' (type arguments) — so "github.com/x/y.(*T).M"+0x4 is
// named y.(*T).M+0x4. A name that still cannot be a probe name is refused
// by the caller with a hint to give one (NAME=LOCATION).
func defaultName(loc string) string {
	if !strings.HasPrefix(loc, `"`) {
		return loc
	}
	sym, rel, err := objfile.SplitQuoted(loc)
	if err != nil {
		return loc
	}
	head := sym
	if i := strings.IndexByte(head, '['); i >= 0 {
		head = head[:i]
	}
	if i := strings.LastIndexByte(head, '/'); i >= 0 {
		sym = sym[i+1:]
	}
	if rel != 0 {
		sym += "+0x" + strconv.FormatUint(rel, 16)
	}
	return sym
}
