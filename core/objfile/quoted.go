package objfile

import (
	"errors"
	"strconv"
	"strings"
)

// Quoted symbols: a location may name any symbol, also one that the plain
// SYMBOL form cannot hold — a Go symbol with its import path
// ("github.com/x/y.F", "github.com/x/y.(*T).M"), one with '+', ':' or white
// space — by quoting it as a Go string literal:
//
//	"github.com/x/y.F"          the symbol
//	"github.com/x/y.F"+0x10     OFF bytes into it (hex, octal or decimal)
//
// The quoted text is unquoted with Go's rules (strconv.Unquote: \" and \\
// inside, \xNN for any byte); it names the symbol exactly, as .symtab holds
// it. C++ symbols are named by their mangled names (_ZN3foo3barEv), quoted
// or not: demangled names are not looked up.

// SplitQuoted parses the quoted location loc ("SYMBOL" or "SYMBOL"+OFF) and
// returns the symbol and OFF (0 without one). The errors are plain reasons;
// Resolve wraps them with ErrSyntax.
func SplitQuoted(loc string) (sym string, rel uint64, err error) {
	if !strings.HasPrefix(loc, `"`) {
		return "", 0, errors.New(`a quoted symbol starts with '"'`)
	}
	q, err := strconv.QuotedPrefix(loc)
	if err != nil || q[0] != '"' {
		return "", 0, errors.New(`unterminated or malformed quoted symbol (a Go string literal: "github.com/x/y.F")`)
	}
	sym, err = strconv.Unquote(q)
	if err != nil {
		return "", 0, err
	}
	switch {
	case sym == "":
		return "", 0, errors.New("empty quoted symbol")
	case strings.IndexByte(sym, 0) >= 0:
		return "", 0, errors.New("NUL byte in a quoted symbol")
	}
	rest := loc[len(q):]
	if rest == "" {
		return sym, 0, nil
	}
	n, ok := ParseNumber(strings.TrimPrefix(rest, "+"))
	if rest[0] != '+' || !ok {
		return "", 0, errors.New(`after a quoted symbol only +OFF may follow ("SYMBOL"+0x10)`)
	}
	return sym, n, nil
}
