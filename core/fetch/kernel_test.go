package fetch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/kuprobe"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestMain(m *testing.M) { os.Exit(testfix.Main(m)) }

// ourDeviations are the arguments where Parse and tracefs disagree on
// purpose (see the package doc), with whether we accept them.
var ourDeviations = map[string]bool{
	"+0(%di)x":          false, // tracefs ignores text after the last ')'
	"+0x100000000(%di)": false, // tracefs cuts the offset to 32 bits
	"$stack4294967296":  false, // tracefs cuts N to 32 bits
	"+0(%ax):u32[4]":    false, // arrays: not implemented
}

// ours reports whether arg is ours only: $argN, the symbol type and the
// assembler register names, which tracefs refuses for uprobes.
func ours(arg string) bool {
	if strings.Contains(arg, "$arg") || strings.HasSuffix(arg, ":symbol") {
		return true
	}
	for name := range registers {
		if strings.Contains(arg, "%"+name) && !isTracefsReg(name) {
			return true
		}
	}
	return false
}

// ownReasons are the reasons we word otherwise than the kernel, or where
// the kernel gives none, or another (the kernel on this machine may be
// newer than the messages we copied).
var ownReasons = map[string]bool{
	reasonStringOnly:    true, // tracefs: no message, or "Invalid type" variants
	reasonDerefTrailing: true, // tracefs accepts
	reasonArray:         true, // tracefs accepts
}

// kernelAliases are the kernel's reasons of newer kernels for what we
// refuse with the older reason: a bare word is a BTF variable since 6.x.
var kernelAliases = map[string]string{
	"BTF is not available or not supported": reasonBadFetchArg,
}

// kernelReason returns the reason of the error_log entry of the probe
// named name ("" if there is none): the kernel keeps the last few errors of
// every tracefs user, so it is found by its unique name. The log is only
// read, never cleared (other tests on the machine may use it).
func kernelReason(name string) string {
	b, err := os.ReadFile(filepath.Join(kuprobe.Dir, "error_log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	reason := ""
	for i := 0; i+1 < len(lines); i++ {
		if _, r, ok := strings.Cut(lines[i], "error: "); ok && strings.Contains(lines[i+1], "uprobes/"+name+" ") {
			reason = strings.ReplaceAll(r, "valiable", "variable")
		}
	}
	return reason
}

func isTracefsReg(name string) bool {
	for _, r := range TracefsRegisters {
		if r == name {
			return true
		}
	}
	return false
}

// TestKernelParser writes every argument of the tests to the running
// kernel's uprobe_events, on a private copy of a C fixture (the probes are
// never enabled), and checks that the kernel accepts exactly what Parse
// accepts, but for the deviations the package doc lists; for an accepted
// argument, that the kernel lists it as Arg.String does.
func TestKernelParser(t *testing.T) {
	if err := kuprobe.Available(); err != nil {
		t.Skip(err)
	}
	bin := testfix.Target(t)
	off := testfix.SymOff(t, bin, "tick")
	n := 0
	// add writes a probe with args; it reports whether the kernel took it,
	// and its listing in uprobe_events.
	var lastName string
	add := func(isReturn bool, args ...string) (bool, string) {
		n++
		name := fmt.Sprintf("ufsfetch%d_%d", os.Getpid(), n)
		lastName = name
		kind := "p"
		if isReturn {
			kind = "r"
		}
		line := fmt.Sprintf("%s:uprobes/%s %s:%#x %s", kind, name, bin, off, strings.Join(args, " "))
		f, err := os.OpenFile(filepath.Join(kuprobe.Dir, "uprobe_events"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString(line + "\n")
		f.Close()
		if err != nil {
			return false, ""
		}
		b, _ := os.ReadFile(filepath.Join(kuprobe.Dir, "uprobe_events"))
		var listed string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "uprobes/"+name+" ") {
				listed = l
			}
		}
		p := &kuprobe.Probe{Name: name}
		if err := p.Remove(); err != nil {
			t.Fatal(err)
		}
		return true, listed
	}
	t.Cleanup(func() {
		// Nothing is left if every add removed its probe; check.
		b, _ := os.ReadFile(filepath.Join(kuprobe.Dir, "uprobe_events"))
		if strings.Contains(string(b), fmt.Sprintf("ufsfetch%d_", os.Getpid())) {
			t.Errorf("probes left in uprobe_events:\n%s", b)
		}
	})

	var args []string
	args = append(args, acceptCases...)
	for _, c := range evalCases {
		args = append(args, c.arg)
	}
	for _, c := range errorCases {
		args = append(args, c.arg)
	}
	args = append(args, "$retval", "+0($retval):u8", "$retval:s32")
	for _, arg := range args {
		if arg == "" || strings.ContainsAny(arg, " \t") {
			continue // the kernel splits the line: not one argument
		}
		for _, isReturn := range []bool{false, true} {
			parsed, err := Parse([]string{arg}, isReturn)
			we := err == nil
			kernel, listed := add(isReturn, arg)
			if dev, ok := ourDeviations[arg]; ok {
				if we != dev || kernel == dev {
					t.Errorf("%q: listed as a deviation (we accept: %v), but we accept: %v, the kernel: %v", arg, dev, we, kernel)
				}
				continue
			}
			if ours(arg) && we && !kernel {
				continue
			}
			if we != kernel {
				t.Errorf("%q (return probe: %v): we accept: %v (%v), the kernel: %v", arg, isReturn, we, err, kernel)
				continue
			}
			if we && !strings.HasSuffix(listed, " "+parsed[0].String()) {
				t.Errorf("%q: the kernel lists %q, we %q", arg, listed, parsed[0].String())
			}
			var e *Error
			if !we && errors.As(err, &e) {
				kr := kernelReason(lastName)
				if alias, ok := kernelAliases[kr]; ok {
					kr = alias
				}
				if kr != "" && kr != e.Reason && !ownReasons[e.Reason] && !ours(arg) {
					t.Errorf("%q: the kernel's reason %q, ours %q", arg, kr, e.Reason)
				}
			}
		}
	}

	// Lines: names across arguments, and the length limits.
	body := "+" + strings.Repeat("0", MaxArgLen-len("+0(%ax):u64")) + "0(%ax):u64"
	for _, line := range [][]string{
		{"a=%ax", "a=%bx"}, {"arg2=%ax", "%bx"}, {"%bx", "arg1=%ax"}, {"arg1=%ax", "arg2=%bx"},
		{strings.Repeat("n", MaxNameLen) + "=%ax"}, {strings.Repeat("n", MaxNameLen+1) + "=%ax"},
		{body}, {"n=" + body}, {body + "0"}, {"n=0" + body},
	} {
		_, err := Parse(line, false)
		if kernel, _ := add(false, line...); kernel != (err == nil) {
			t.Errorf("%q: we accept: %v (%v), the kernel: %v", line, err == nil, err, kernel)
		}
	}

	// The number of arguments.
	many := make([]string, MaxArgs+1)
	for i := range many {
		many[i] = "%ax"
	}
	if ok, _ := add(false, many[:MaxArgs]...); !ok {
		t.Errorf("the kernel refuses %d arguments", MaxArgs)
	}
	if ok, _ := add(false, many...); ok {
		t.Errorf("the kernel accepts %d arguments", MaxArgs+1)
	}
	_, err := Parse(many, false)
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Parse(%d arguments) = %v", MaxArgs+1, err)
	}
}
