package fetch

import (
	"errors"
	"fmt"
)

// ErrInvalid is the sentinel every error of Parse wraps: a fetch argument
// (or the list of them) that tracefs would refuse, or that this package
// refuses where tracefs is silently lax (see the package doc). Test with
// errors.Is; the manager maps it to EINVAL.
var ErrInvalid = errors.New("invalid fetch argument")

// The reasons of Error, worded as the kernel's trace_probe error log
// (kernel/trace/trace_probe.h, ERRORS), with its spelling mistake fixed, and
// a few of our own where tracefs has no message.
const (
	reasonTooManyArgs   = "Too many arguments (at most 128)"
	reasonArgNameLong   = "Argument name is too long"
	reasonNoArgName     = "Argument name is not specified"
	reasonBadArgName    = "Argument name must follow the same rules as C identifiers"
	reasonUsedArgName   = "This argument name is already used"
	reasonArgTooLong    = "Argument expression is too long"
	reasonNoArgBody     = "No argument expression"
	reasonRetvalOnProbe = "$retval is not available on probe"
	reasonBadStackNum   = "Invalid stack number"
	reasonBadArgNum     = "Invalid argument number"
	reasonBadVar        = "Invalid $-variable specified"
	reasonBadRegName    = "Invalid register name"
	reasonBadMemAddr    = "Invalid memory address"
	reasonBadImm        = "Invalid immediate value"
	reasonImmStrNoClose = "String is not closed with '\"'"
	reasonBadFileOffs   = "Invalid file offset value"
	reasonSymOnUprobe   = "Symbol is not available with uprobe"
	reasonTooManyOps    = "Dereference is too much nested"
	reasonDerefBrace    = "Dereference needs a brace"
	reasonBadDerefOffs  = "Invalid dereference offset"
	reasonDerefOpen     = "Dereference brace is not closed"
	reasonDerefTrailing = "Garbage after the dereference brace"
	reasonCommCantDeref = "$comm can not be dereferenced"
	reasonBadFetchArg   = "Invalid fetch argument"
	reasonArray         = "Array types are not supported"
	reasonBadType       = "Unknown type is specified"
	reasonStringOnly    = "$comm and immediate strings accept only the string type"
	reasonBadString     = "String accepts only memory argument"
	reasonBadBitfield   = "Invalid bitfield"
)

// Error is a refused fetch argument. It names the argument (its index and
// text) and the faulty token inside it, as the kernel's error_log points a
// caret at it. Error unwraps to ErrInvalid.
type Error struct {
	// Index is the argument's position in the list given to Parse, from 0.
	Index int
	// Arg is the whole argument as written (NAME=FETCHARG:TYPE).
	Arg string
	// Pos is the byte offset in Arg where tracefs's error log puts its
	// caret: where Token starts, or for an unclosed brace or string where
	// it ends.
	Pos int
	// Token is the faulty part of Arg: a sub-expression, a type, a name.
	Token string
	// Reason says what is wrong, in tracefs's words where it has them.
	Reason string
}

func (e *Error) Error() string {
	if e.Token == e.Arg || e.Token == "" {
		return fmt.Sprintf("fetch argument %d %q: %s", e.Index+1, e.Arg, e.Reason)
	}
	return fmt.Sprintf("fetch argument %d %q: %s: %q (at byte %d)", e.Index+1, e.Arg, e.Reason, e.Token, e.Pos)
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }
