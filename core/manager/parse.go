package manager

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/uprobefs/uprobefs/core/fetch"
	"github.com/uprobefs/uprobefs/core/objfile"
)

// Limits.
const (
	// MaxWrite is the largest write(2) the probes file accepts (one batch).
	MaxWrite = 64 << 10
	// MaxLine is the longest line of a probes file write.
	MaxLine = 4096
	// MaxName is the longest probe name (a directory name).
	MaxName = 255
	// MaxProbes is the most probes one Manager holds.
	MaxProbes = 10000
	// errorLogSize is the number of refused requests the error log keeps.
	errorLogSize = 1000
)

// Op is one parsed line of a probes file write: register Location under Name
// (Name "" means the canonical location), or, if Remove, unregister Name.
type Op struct {
	Remove   bool
	Name     string
	Location string
	Filter   *Filter // the processes it is limited to (filter.go); nil: all
	// Args are the fetch arguments of a p:NAME LOCATION FETCHARGS line
	// (args.go).
	Args []fetch.Arg
	// Return: a return probe (r:NAME LOCATION, LOCATION%return: ret.go).
	Return bool
}

// ParseProbeLines parses what was written into a probes file. One probe a
// line, in one of these forms (blank lines and lines starting with '#' are
// ignored; spaces and tabs around a line and a trailing "\r" are ignored):
//
//	OFFSET              file offset, hex (0x4a0), octal (02240) or decimal (1184)
//	SYMBOL              a function symbol of .symtab or .dynsym
//	SYMBOL+OFF          OFF bytes into it (hex, octal or decimal)
//	"SYMBOL"[+OFF]      a quoted symbol (a Go string literal): any symbol,
//	                    such as "github.com/x/y.F" (quoted.go)
//	NAME=LOCATION       LOCATION (one of the above) under the name NAME
//	p:NAME LOCATION [FETCHARGS]
//	                    the same, tracefs style ("p LOCATION" has no
//	                    name), with tracefs's fetch arguments (args.go)
//	r:NAME LOCATION [FETCHARGS], r LOCATION, LOCATION%return, NAME=LOCATION%return
//	                    a return probe (ret.go)
//	-NAME, -:NAME       unregister the probe NAME
//
// A name is 1 to 255 bytes without '/', '=', white space or control
// characters, does not start with '-', is not all digits, and is not ".",
// ".." or "probes".
// A number has a base as in uprobe_events (kstrtoul base 0): "0x" hex, a
// leading 0 octal, else decimal. A name is not all digits, so "-1" is a
// negative offset (EINVAL), never a removal.
// Errors are *Error with EINVAL naming the line: NUL bytes, lines longer than
// MaxLine, unknown forms (PATH:OFFSET), bad fetch
// arguments (the reason names the token),
// bad names, and input without any line (empty write).
func ParseProbeLines(text string) ([]Op, error) {
	if strings.IndexByte(text, 0) >= 0 {
		return nil, errorf(syscall.EINVAL, "NUL byte in input")
	}
	var ops []Op
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if len(line) > MaxLine {
			return nil, errorf(syscall.EINVAL, "line %d: too long (%d bytes, at most %d)", n, len(line), MaxLine)
		}
		line = strings.TrimSuffix(line, "\r")
		line = strings.Trim(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		op, err := parseLineFilter(line)
		if err != nil {
			return nil, errorf(syscall.EINVAL, "line %d: %s", n, err)
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		return nil, errorf(syscall.EINVAL, "empty write: no probe in the input (write OFFSET, SYMBOL, SYMBOL+OFF, NAME=LOCATION, p:NAME LOCATION or -NAME)")
	}
	return ops, nil
}

func parseLine(line string) (Op, error) {
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return Op{}, fmt.Errorf("control character %q", c)
		}
	}
	switch {
	case strings.HasPrefix(line, "-"):
		if err := checkRemoveLine(line); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(line, "-"), ":")
		if err := checkName(name); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		return Op{Remove: true, Name: name}, nil
	case strings.HasPrefix(line, "p:") || strings.HasPrefix(line, "r:") || ((strings.HasPrefix(line, "p ") || strings.HasPrefix(line, "p\t") || strings.HasPrefix(line, "r ") || strings.HasPrefix(line, "r\t")) && len(strings.Fields(line)) >= 2):
		f := strings.Fields(line)
		kind := f[0][:1]
		if len(f) < 2 {
			return Op{}, fmt.Errorf("%q: want %s:NAME LOCATION", line, kind)
		}
		loc, ret := cutReturn(f[1])
		ret = ret || kind == "r"
		var args []fetch.Arg
		if len(f) > 2 {
			a, err := fetch.Parse(f[2:], ret)
			if err != nil {
				return Op{}, fmt.Errorf("%q: %v", line, err)
			}
			args = a
		}
		f[1] = loc
		name := strings.TrimPrefix(strings.TrimPrefix(f[0], kind), ":")
		if name != "" {
			if err := checkName(name); err != nil {
				return Op{}, fmt.Errorf("%q: %v", line, err)
			}
		}
		if err := checkLocation(f[1]); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		return Op{Name: name, Location: f[1], Args: args, Return: ret}, nil
	}
	if name, loc, ok := strings.Cut(line, "="); ok && line[0] != '"' {
		name, loc = strings.Trim(name, " \t"), strings.Trim(loc, " \t")
		if err := checkName(name); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		loc, ret := cutReturn(loc)
		if err := checkLocation(loc); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		return Op{Name: name, Location: loc, Return: ret}, nil
	}
	loc, ret := cutReturn(line)
	if err := checkLocation(loc); err != nil {
		return Op{}, fmt.Errorf("%q: %v", line, err)
	}
	return Op{Location: loc, Return: ret}, nil
}

func checkLocation(loc string) error {
	if strings.HasPrefix(loc, `"`) {
		return checkQuotedLocation(loc)
	}
	switch {
	case loc == "":
		return errors.New("missing location")
	case strings.ContainsAny(loc, " \t"):
		return errors.New("unexpected text after the location")
	case strings.Contains(loc, "="):
		return errors.New("more than one '='")
	case strings.Contains(loc, ":") || strings.Contains(loc, "/"):
		return errors.New("a location is an offset or a symbol of this file (no PATH: part, the path is the file you write to); quote a symbol with '/' or ':' as a Go string: \"github.com/x/y.F\"")
	case strings.HasPrefix(loc, "-"):
		return errors.New("negative offset")
	}
	return nil
}

// checkName reports why name cannot be a probe name, or nil.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty probe name")
	case len(name) > MaxName:
		return fmt.Errorf("probe name longer than %d bytes", MaxName)
	case name == "." || name == ".." || name == "probes":
		return fmt.Errorf("%q is reserved and cannot be a probe name", name)
	case name[0] == '-':
		return errors.New("a probe name cannot start with '-'")
	case allDigits(name):
		return errors.New("a probe name cannot be all digits (-NAME would read as a negative offset)")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f || c == '/' || c == '=' {
			return fmt.Errorf("probe name %q contains %q", name, c)
		}
	}
	return nil
}

// canonicalLocation is the default name of a probe at loc (as written, which
// install.Resolve accepted): offsets become lowercase hex ("1184" ->
// "0x4a0"), "sym+0" becomes "sym", "sym+16" becomes "sym+0x10"; a quoted
// symbol as canonicalQuoted says.
func canonicalLocation(loc string) string {
	if strings.HasPrefix(loc, `"`) {
		return canonicalQuoted(loc)
	}
	if loc != "" && loc[0] >= '0' && loc[0] <= '9' {
		if n, ok := objfile.ParseNumber(loc); ok {
			return "0x" + strconv.FormatUint(n, 16)
		}
		return loc
	}
	if i := strings.LastIndexByte(loc, '+'); i >= 0 {
		if n, ok := objfile.ParseNumber(loc[i+1:]); ok {
			if n == 0 {
				return loc[:i]
			}
			return loc[:i] + "+0x" + strconv.FormatUint(n, 16)
		}
	}
	return loc
}
