package objfile

import (
	"sort"
	"strings"
)

// IsPattern reports whether s is a wildcard pattern: it contains '*' or
// '?'. A quoted symbol ("pkg.(*T).M", a Go method) is never one.
func IsPattern(s string) bool { return !strings.HasPrefix(s, `"`) && strings.ContainsAny(s, "*?") }

// MatchPattern reports whether name matches pattern as a whole: '*' matches
// any run of bytes (none included), '?' any one byte, and every other byte
// itself (there are no classes and no escapes: '[' and '\' are plain
// bytes). It takes time O(len(pattern) × len(name)) at worst.
func MatchPattern(pattern, name string) bool {
	// The classic greedy match with one backtrack point: the last '*'
	// and the name position it was tried at.
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == name[n]):
			p++
			n++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case star >= 0:
			mark++
			p, n = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Functions returns the names of the function symbols (those Resolve
// knows: defined STT_FUNC symbols of .symtab and .dynsym in an executable
// segment) that match pattern (see MatchPattern), sorted, each once. A name
// with several definitions is listed once; Resolve decides whether it
// names one function.
func (f *File) Functions(pattern string) []string {
	var names []string
	for name := range f.byName {
		if MatchPattern(pattern, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}
