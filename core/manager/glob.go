package manager

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/uprobefs/uprobefs/core/objfile"
)

// Wildcards. A location with '*' or '?' (objfile.MatchPattern: '*' any run
// of bytes, '?' one byte, nothing else special) is a pattern over the
// file's function symbols; a "-" line whose name has them removes every
// probe whose name matches:
//
//	PATTERN     one probe per matching function symbol, named after it,
//	            at its first instruction ("alpha_*", "*alloc*", "f?o")
//	-PATTERN    unregister every matching probe the caller may remove
//
// Probe names therefore never contain '*' or '?'. NAME=PATTERN,
// p:NAME PATTERN and PATTERN+OFF are refused (EINVAL): the names of a
// pattern's probes are the symbols'.
//
// A pattern matching more than MaxPatternMatches function symbols is
// refused (E2BIG) before anything is analysed. Among the matches, a symbol
// name with several definitions (local functions of different files) and a
// function whose first instruction cannot be probed are left out and
// logged; the rest is registered all or nothing like any batch (EEXIST if a
// probe of one of the names exists). A pattern that matches nothing, or
// only functions left out, is refused with ENOENT (the reasons in the
// error).

// MaxPatternMatches is the most function symbols one wildcard line may
// match.
const MaxPatternMatches = 4096

// patternLimit is MaxPatternMatches (a variable so that a test can lower
// it).
var patternLimit = MaxPatternMatches

// parseLineGlob is parseLine with the wildcard rules on top: a pattern is
// only a location of its own or the name of a removal.
func parseLineGlob(line string) (Op, error) {
	op, err := parseLine(line)
	if err != nil {
		return op, err
	}
	if err := checkPatternOp(op); err != nil {
		return Op{}, fmt.Errorf("%q: %v", line, err)
	}
	return op, nil
}

// checkPatternOp reports why op misuses a wildcard, or nil.
func checkPatternOp(op Op) error {
	if op.Remove {
		return nil // "-PATTERN": any name pattern
	}
	switch {
	case objfile.IsPattern(op.Location) && op.Name != "":
		return errors.New("a pattern registers one probe per matching function, named after it: NAME= (or p:NAME) cannot be given with a pattern")
	case objfile.IsPattern(op.Name):
		return fmt.Errorf("probe name %q contains a wildcard ('*' or '?')", op.Name)
	case !objfile.IsPattern(op.Location):
		return nil
	case strings.Contains(op.Location, "+"):
		return errors.New("a pattern takes no +OFF: it names the first instruction of every matching function")
	case op.Location[0] >= '0' && op.Location[0] <= '9':
		return errors.New("an offset cannot be a pattern: wildcards match function symbols")
	}
	return nil
}

// stageOp stages one op: a pattern (see above) or a single probe, with
// its process filter (filter.go).
func (b *batch) stageOp(op Op) error {
	switch {
	case op.Remove && objfile.IsPattern(op.Name):
		return b.stageRemovePattern(op.Name)
	case op.Remove:
		return b.stageRemove(op)
	}
	if err := b.stageFilter(op.Filter); err != nil {
		return err
	}
	switch {
	case objfile.IsPattern(op.Location):
		return b.stageAddPattern(op.Location)
	}
	return b.stageAdd(op)
}

// stageAddPattern stages one probe per function symbol matching pattern.
func (b *batch) stageAddPattern(pattern string) error {
	if err := b.openELF(); err != nil {
		return err
	}
	names := b.elf.Functions(pattern)
	if len(names) > patternLimit {
		return errorf(syscall.E2BIG, "pattern %q matches %d function symbols of %s, at most %d are allowed in one pattern: narrow it", pattern, len(names), b.path, patternLimit)
	}
	var left []string
	added := 0
	for _, name := range names {
		err := b.stageAdd(Op{Location: name})
		switch {
		case err == nil:
			added++
		case AsError(err).Errno == syscall.EEXIST:
			return err
		default: // ambiguous, not probeable, or not a valid probe name
			left = append(left, AsError(err).Reason)
		}
	}
	if added == 0 {
		if len(names) == 0 {
			return errorf(syscall.ENOENT, "pattern %q matches no function symbol of %s (.symtab or .dynsym)", pattern, b.path)
		}
		return errorf(syscall.ENOENT, "pattern %q matches %d function symbols of %s, none of which can be probed: %s", pattern, len(names), b.path, strings.Join(left, "; "))
	}
	b.left = append(b.left, left...)
	return nil
}

// stageRemovePattern stages the removal of every probe (as the earlier ops
// leave them) whose name matches pattern and which the caller may remove.
func (b *batch) stageRemovePattern(pattern string) error {
	var names []string
	others := 0
	for name, p := range b.staged {
		if !objfile.MatchPattern(pattern, name) {
			continue
		}
		if b.caller.Uid != 0 && p.Owner != b.caller.Uid {
			others++
			continue
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		if others > 0 {
			return errorf(syscall.EPERM, "pattern %q matches only probes of other users on %s (%d)", pattern, b.path, others)
		}
		return errorf(syscall.ENOENT, "pattern %q matches no probe on %s", pattern, b.path)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := b.stageRemove(Op{Remove: true, Name: name}); err != nil {
			return err
		}
	}
	return nil
}
