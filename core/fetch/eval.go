package fetch

import (
	"bytes"
	"strconv"
	"strings"
)

// FaultString is what tracefs prints for a value it could not read
// (trace_probe.c, print_type_string).
const FaultString = "(fault)"

// Eval fetches the argument in ctx and formats it as tracefs prints it
// (trace_probe.c, the print_type functions):
//
//   - u8..u64 and bitfields in decimal, s8..s64 signed decimal, x8..x64 as
//     0x%x, all of the value cut to the type's size;
//   - string and ustring quoted ("..." as the bytes are, up to the NUL,
//     without escaping), $comm likewise; an immediate string \"..." is
//     (fault), as tracefs's uprobes print it (they read it as user memory);
//   - char as the byte itself in single quotes ('%c');
//   - symbol as ctx.Symbolize names the address, else 0x%x (as %pS prints
//     an address the kernel knows no symbol for).
//
// Faults are shown as tracefs shows them: a string that cannot be read, or
// has no NUL within MaxString bytes, is (fault); the last memory read of a
// number keeps the bytes it could read and zeroes the rest (copy_from_user);
// $stackN, and $argN on the stack, read as 0 if the word cannot be read
// (get_user_stack_nth). Where tracefs's value is undefined — a dereference
// before the last one that faults leaves its field unwritten — Eval prints
// (fault). Eval never panics.
func (a Arg) Eval(ctx Context) string {
	return string(a.appendValue(nil, &ctx))
}

// Format returns the arguments of one hit as tracefs's print_probe_args
// puts them after the event's head: " NAME=VALUE" for each.
func Format(args []Arg, ctx Context) string {
	var b []byte
	for i := range args {
		b = append(b, ' ')
		b = append(b, args[i].Name...)
		b = append(b, '=')
		b = args[i].appendValue(b, &ctx)
	}
	return string(b)
}

func (a *Arg) appendValue(b []byte, ctx *Context) []byte {
	x := &a.x
	switch x.base {
	case opComm:
		return appendQuoted(b, ctx.Comm)
	case opData:
		// tracefs's uprobes copy every string with strncpy_from_user,
		// also an immediate one, which lives in the kernel: it always
		// faults (TestKernelValues). We print what they print.
		return append(b, FaultString...)
	}
	val, ok := a.baseValue(ctx)
	if !ok {
		return append(b, FaultString...)
	}
	derefs := x.derefs
	// The last memory read is the store itself: of the type's size at
	// val+offset, or of the string there.
	stored := len(derefs) > 0
	if stored {
		derefs = derefs[:len(derefs)-1]
	}
	for _, off := range derefs {
		var w [8]byte
		if n, _ := read(ctx, val+uint64(int64(off)), w[:]); n < len(w) {
			return append(b, FaultString...)
		}
		val = le64(w[:])
	}
	addr := val
	if stored {
		addr = val + uint64(int64(x.derefs[len(x.derefs)-1]))
	}
	if a.typ.kind == kindString {
		// Parse allows strings only at memory (stored) or at \IMM.
		s, ok := readString(ctx, addr)
		if !ok {
			return append(b, FaultString...)
		}
		return appendQuoted(b, s)
	}
	if stored {
		var w [8]byte
		read(ctx, addr, w[:a.typ.size]) // the unread bytes stay 0
		val = le64(w[:])
	}
	return a.typ.appendNumber(b, val, ctx)
}

// baseValue is the first stage of process_fetch_insn (trace_uprobe.c).
func (a *Arg) baseValue(ctx *Context) (uint64, bool) {
	x := &a.x
	var sp uint64
	if ctx.Regs != nil {
		sp = ctx.Regs.Rsp
	}
	switch x.base {
	case opReg:
		return x.reg.get(ctx.Regs), true
	case opStackPtr:
		return sp, true
	case opStack:
		return stackWord(ctx, sp+8*x.imm), true
	case opRetval:
		return ctx.Retval, true
	case opImm:
		return x.imm, true
	case opFileOffset:
		if ctx.FileOffset == nil {
			return 0, false
		}
		return ctx.FileOffset(x.imm)
	case opArg:
		return sysvArg(ctx, sp, x.imm), true
	}
	return 0, false
}

// sysvArg is the n-th (from 1) integer argument of a function at its entry
// in the System V x86-64 ABI: rdi, rsi, rdx, rcx, r8, r9, then the stack
// above the return address.
func sysvArg(ctx *Context, sp, n uint64) uint64 {
	if n > 6 {
		return stackWord(ctx, sp+8*(n-6))
	}
	r := ctx.Regs
	if r == nil {
		return 0
	}
	return [...]uint64{r.Rdi, r.Rsi, r.Rdx, r.Rcx, r.R8, r.R9}[n-1]
}

// stackWord is get_user_stack_nth: the word at addr, 0 if unreadable.
func stackWord(ctx *Context, addr uint64) uint64 {
	var w [8]byte
	if n, _ := read(ctx, addr, w[:]); n < len(w) {
		return 0
	}
	return le64(w[:])
}

func read(ctx *Context, addr uint64, p []byte) (int, error) {
	if ctx.Mem == nil {
		return 0, errNoMemory
	}
	n, err := ctx.Mem.ReadMemory(addr, p)
	if n < 0 || n > len(p) {
		n = 0
	}
	if n < len(p) {
		clear(p[n:])
	}
	return n, err
}

type noMemory struct{}

func (noMemory) Error() string { return "no memory to read" }

var errNoMemory error = noMemory{}

// readString reads the NUL-terminated string at addr, a page at a time (so
// that a string ending before an unmapped page is read), as
// strncpy_from_user does; false if a byte before the NUL cannot be read or
// there is no NUL within MaxString bytes.
func readString(ctx *Context, addr uint64) (string, bool) {
	var sb strings.Builder
	var buf [MaxString]byte
	for sb.Len() < MaxString {
		chunk := 4096 - int(addr&4095)
		if rest := MaxString - sb.Len(); chunk > rest {
			chunk = rest
		}
		n, _ := read(ctx, addr, buf[:chunk])
		if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
			sb.Write(buf[:i])
			return sb.String(), true
		}
		if n < chunk {
			return "", false
		}
		sb.Write(buf[:n])
		addr += uint64(n)
	}
	return "", false
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendNumber formats v (a raw register value or the bytes read, in the
// low size bytes) as the type.
func (t *typeInfo) appendNumber(b []byte, v uint64, ctx *Context) []byte {
	bits := uint(t.size) * 8
	if bits < 64 {
		v &= 1<<bits - 1
	}
	if t.bitfield {
		v = v << t.lshift
		if bits < 64 {
			v &= 1<<bits - 1
		}
		v >>= t.rshift
	}
	switch t.kind {
	case kindSigned:
		s := int64(v<<(64-bits)) >> (64 - bits)
		return strconv.AppendInt(b, s, 10)
	case kindHex:
		return strconv.AppendUint(append(b, "0x"...), v, 16)
	case kindChar:
		return append(b, '\'', byte(v), '\'')
	case kindSymbol:
		if ctx.Symbolize != nil {
			if s := ctx.Symbolize(v); s != "" {
				return append(b, s...)
			}
		}
		return strconv.AppendUint(append(b, "0x"...), v, 16)
	}
	return strconv.AppendUint(b, v, 10)
}
