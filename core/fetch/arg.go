package fetch

import "github.com/uprobefs/uprobefs/core/install"

// op is the first stage of a fetch: where its value comes from.
type op uint8

const (
	opNone       op = iota
	opReg           // a register
	opStack         // $stackN: the word at sp + 8*N
	opStackPtr      // $stack: sp
	opRetval        // $retval
	opComm          // $comm
	opImm           // \IMM, and the address of @ADDR
	opFileOffset    // the address of @+OFFSET
	opArg           // $argN
	opData          // \"STRING"
	opDeref         // (only as "the last op" in Parse's checks)
)

// expression is a parsed FETCHARG: a base value, then memory reads at
// value+offset, innermost first (a dereference, or the read of an @).
type expression struct {
	base   op
	reg    register
	imm    uint64 // opImm, opFileOffset: the number; opStack, opArg: N
	data   string // opData
	derefs []int32
}

// Arg is one parsed fetch argument. It is immutable and safe for
// concurrent use; the zero Arg is not valid (use Parse).
type Arg struct {
	// Name is the argument's name: as given by NAME=, or "argN" for the
	// N-th argument (from 1), as tracefs names them.
	Name string
	// Body is the argument as written after NAME= (FETCHARG[:TYPE]), as
	// tracefs lists it in uprobe_events.
	Body string
	// Type is the fetch type's name: as written, or DefaultType.
	Type string

	x   expression
	typ typeInfo
}

// String returns NAME=BODY, the argument as uprobe_events lists it.
func (a Arg) String() string { return a.Name + "=" + a.Body }

// ReadsMemory reports whether Eval reads the traced process's memory
// (a dereference, @ADDR, @+OFFSET, $stackN, $argN with N > 6); the
// others use only Context's registers and fields.
func (a Arg) ReadsMemory() bool {
	switch {
	case len(a.x.derefs) > 0, a.x.base == opStack, a.x.base == opArg && a.x.imm > 6:
		return true
	case a.typ.kind == kindString && a.x.base == opImm:
		return true
	}
	return false
}

// UsesRetval reports whether the argument fetches $retval.
func (a Arg) UsesRetval() bool { return a.x.base == opRetval }

// Memory reads the traced process's memory.
type Memory interface {
	// ReadMemory reads len(p) bytes at addr into p. It returns how many
	// bytes it read (from the start of p; a read stops at the first byte
	// that cannot be read) and a non-nil error if that is fewer than
	// len(p). It must not panic, whatever addr is.
	ReadMemory(addr uint64, p []byte) (int, error)
}

// Context is what Eval fetches from: the state of one thread at one hit.
// A nil field reads as zero (registers, Retval), as a fault (Mem,
// FileOffset), or as no symbol (Symbolize).
type Context struct {
	// Regs is the thread's registers at the hit: at the probed
	// instruction, or for a return probe at the return.
	Regs *install.Regs
	// Mem is the thread's memory.
	Mem Memory
	// Comm is the thread's command name (/proc/PID/task/TID/comm).
	Comm string
	// Retval is $retval: rax at the return of the probed function.
	Retval uint64
	// Symbolize names a code address for the symbol type, as
	// "func+0x10"; "" if it knows none (Eval then prints 0x%x).
	Symbolize func(vaddr uint64) string
	// FileOffset gives the address at which the probed file's offset off
	// is mapped in this process, for @+OFFSET; false if it is not mapped.
	FileOffset func(off uint64) (vaddr uint64, ok bool)
}
