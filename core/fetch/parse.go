package fetch

import (
	"fmt"
	"strings"
)

// Limits, as tracefs's (kernel/trace/trace_probe.h).
const (
	// MaxArgs is the most fetch arguments a probe may have (MAX_TRACE_ARGS).
	MaxArgs = 128
	// MaxArgLen is the longest FETCHARG[:TYPE] after NAME= (MAX_ARGSTR_LEN).
	MaxArgLen = 63
	// MaxNameLen is the longest argument NAME (MAX_ARG_NAME_LEN).
	MaxNameLen = 32
	// MaxDerefs is the most memory reads of one argument, each
	// +|-OFFS(...) and each @ counting one: FETCH_INSN_MAX (16) less the
	// fetch and the end instructions.
	MaxDerefs = 14
	// MaxArgNum is the largest N of $argN: PARAM_MAX_STACK, the words of a
	// 16 KiB kernel stack, as for kprobe's $argN.
	MaxArgNum = 2048
	// MaxString is the largest string read, its terminating NUL included
	// (MAX_STRING_SIZE, PATH_MAX).
	MaxString = 4096
)

// reservedNames are the event fields an argument may not be named after
// (trace_probe.c, reserved_field_names).
var reservedNames = []string{
	"common_type", "common_flags", "common_preempt_count", "common_pid",
	"common_tgid", "__probe_ip", "__probe_ret_ip", "__probe_func",
}

// Parse parses the FETCHARGS of a probe line (the white-space separated
// tokens after its location) with tracefs's grammar and rules; isReturn says
// whether the probe is a return probe (only those may fetch $retval). It
// returns one Arg per token, or an *Error (wrapping ErrInvalid) for the
// first refused token: then no Arg is returned. No tokens give no Args.
func Parse(args []string, isReturn bool) ([]Arg, error) {
	if len(args) > MaxArgs {
		return nil, &Error{Index: MaxArgs, Arg: args[MaxArgs], Token: args[MaxArgs], Reason: reasonTooManyArgs}
	}
	out := make([]Arg, 0, len(args))
	for i, s := range args {
		a, err := parseOne(i, s, isReturn, out)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// parser holds the argument being parsed, for error messages.
type parser struct {
	index    int
	arg      string
	isReturn bool
	derefs   int
}

func (p *parser) fail(pos int, token, reason string) *Error {
	return &Error{Index: p.index, Arg: p.arg, Pos: pos, Token: token, Reason: reason}
}

// parseOne is traceprobe_parse_probe_arg and _body for argument i.
func parseOne(i int, s string, isReturn bool, prev []Arg) (Arg, error) {
	p := &parser{index: i, arg: s, isReturn: isReturn}
	name, body, bodyPos := "", s, 0
	if eq := strings.IndexByte(s, '='); eq >= 0 {
		switch {
		case eq > MaxNameLen:
			return Arg{}, p.fail(0, s[:eq], reasonArgNameLong)
		case eq == 0:
			return Arg{}, p.fail(0, "", reasonNoArgName)
		}
		name, body, bodyPos = s[:eq], s[eq+1:], eq+1
	} else {
		name = fmt.Sprintf("arg%d", i+1)
	}
	if !goodName(name) {
		return Arg{}, p.fail(0, name, reasonBadArgName)
	}
	for _, r := range reservedNames {
		if name == r {
			return Arg{}, p.fail(0, name, reasonUsedArgName)
		}
	}
	for _, a := range prev {
		if a.Name == name {
			return Arg{}, p.fail(0, name, reasonUsedArgName)
		}
	}
	switch {
	case len(body) > MaxArgLen:
		return Arg{}, p.fail(bodyPos, body, reasonArgTooLong)
	case body == "":
		return Arg{}, p.fail(bodyPos, "", reasonNoArgBody)
	}

	expr, tname, typePos := body, "", -1
	if c := strings.IndexByte(body, ':'); c >= 0 {
		expr, tname, typePos = body[:c], body[c+1:], bodyPos+c+1
		if strings.IndexByte(tname, '[') >= 0 {
			return Arg{}, p.fail(typePos, tname, reasonArray)
		}
	}
	var typ typeInfo
	var ok bool
	if expr == "$comm" || expr == "$COMM" || strings.HasPrefix(expr, `\"`) {
		// $comm and immediate strings are strings, and nothing else.
		if typePos >= 0 && tname != "string" {
			return Arg{}, p.fail(typePos, tname, reasonStringOnly)
		}
		typ, ok = lookupType("string")
	} else {
		typ, ok = lookupType(tname)
		// "%ax:" names the empty type, which does not exist.
		ok = ok && (typePos < 0 || tname != "")
	}
	if !ok {
		pos := bodyPos
		if typePos >= 0 {
			pos = typePos
		}
		return Arg{}, p.fail(pos, tname, reasonBadType)
	}

	x, err := p.parseExpr(expr, bodyPos)
	if err != nil {
		return Arg{}, err
	}
	last := x.base
	if len(x.derefs) > 0 {
		last = opDeref
	}
	if typ.kind == kindString {
		switch last {
		case opDeref, opImm, opComm, opData:
		default:
			pos := bodyPos
			if typePos >= 0 {
				pos = typePos
			}
			return Arg{}, p.fail(pos, tname, reasonBadString)
		}
	}
	if typ.bitfield {
		if err := p.parseBitfield(&typ, tname, typePos, len(x.derefs)); err != nil {
			return Arg{}, err
		}
	}
	return Arg{Name: name, Body: body, Type: typ.name, x: x, typ: typ}, nil
}

// goodName is is_good_name: a C identifier.
func goodName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c|0x20 >= 'a' && c|0x20 <= 'z' || c == '_'
		if !alpha && (i == 0 || !isDigit(c)) {
			return false
		}
	}
	return true
}

// parseExpr is parse_probe_arg: expr starts at byte pos of the argument.
func (p *parser) parseExpr(expr string, pos int) (expression, error) {
	var x expression
	if expr == "" {
		return x, p.fail(pos, expr, reasonBadFetchArg)
	}
	switch expr[0] {
	case '$':
		return p.parseVar(expr, pos)
	case '%':
		r, ok := registers[expr[1:]]
		if !ok {
			return x, p.fail(pos, expr, reasonBadRegName)
		}
		x.base, x.reg = opReg, r
		return x, nil
	case '@':
		switch {
		case len(expr) > 1 && isDigit(expr[1]):
			v, ok := kstrtoull(expr[1:], 0)
			if !ok {
				return x, p.fail(pos, expr, reasonBadMemAddr)
			}
			x.base, x.imm = opImm, v
		case len(expr) > 1 && expr[1] == '+':
			v, ok := kstrtoll(expr[2:], 0)
			if !ok {
				return x, p.fail(pos, expr, reasonBadFileOffs)
			}
			x.base, x.imm = opFileOffset, uint64(v)
		default:
			return x, p.fail(pos, expr, reasonSymOnUprobe)
		}
		if p.derefs++; p.derefs > MaxDerefs {
			return x, p.fail(pos, expr, reasonTooManyOps)
		}
		x.derefs = append(x.derefs, 0)
		return x, nil
	case '+', '-':
		return p.parseDeref(expr, pos)
	case '\\':
		if len(expr) > 1 && expr[1] == '"' {
			s := expr[2:]
			if s == "" || s[len(s)-1] != '"' {
				return x, p.fail(pos+len(expr), expr, reasonImmStrNoClose)
			}
			x.base, x.data = opData, s[:len(s)-1]
			return x, nil
		}
		s := expr[1:]
		var v uint64
		ok := false
		switch {
		case s != "" && isDigit(s[0]):
			v, ok = kstrtoull(s, 0)
		case s != "" && s[0] == '-':
			var n int64
			n, ok = kstrtoll(s, 0)
			v = uint64(n)
		case s != "" && s[0] == '+':
			var n int64
			n, ok = kstrtoll(s[1:], 0)
			v = uint64(n)
		}
		if !ok {
			return x, p.fail(pos+1, expr, reasonBadImm)
		}
		x.base, x.imm = opImm, v
		return x, nil
	}
	return x, p.fail(pos, expr, reasonBadFetchArg)
}

// parseVar is parse_probe_vars, with $argN for every probe (tracefs has it
// only for kprobes at a function entry): expr is "$...".
func (p *parser) parseVar(expr string, pos int) (expression, error) {
	var x expression
	v := expr[1:]
	switch {
	case v == "retval":
		if !p.isReturn {
			return x, p.fail(pos, expr, reasonRetvalOnProbe)
		}
		x.base = opRetval
	case v == "stack":
		x.base = opStackPtr
	case len(v) > 5 && strings.HasPrefix(v, "stack") && isDigit(v[5]):
		n, ok := kstrtoull(v[5:], 10)
		if !ok {
			return x, p.fail(pos, expr, reasonBadVar)
		}
		if n > 1<<32-1 {
			// tracefs truncates N to 32 bits; we refuse it.
			return x, p.fail(pos, expr, reasonBadStackNum)
		}
		x.base, x.imm = opStack, n
	case v == "comm" || v == "COMM":
		x.base = opComm
	case strings.HasPrefix(v, "arg"):
		// As kprobe's $argN: kstrtoul, so "$arg+1" is $arg1.
		n, ok := kstrtoull(v[3:], 10)
		if !ok {
			return x, p.fail(pos, expr, reasonBadVar)
		}
		if n == 0 || n > MaxArgNum {
			return x, p.fail(pos, expr, reasonBadArgNum)
		}
		x.base, x.imm = opArg, n
	default:
		return x, p.fail(pos, expr, reasonBadVar)
	}
	return x, nil
}

// parseDeref parses +|-[u]OFFS(FETCHARG).
func (p *parser) parseDeref(expr string, pos int) (expression, error) {
	var x expression
	s := expr
	sign := s[0]
	skip := 0
	if len(s) > 1 && s[1] == 'u' {
		// "u" (user-space memory) changes nothing for uprobes.
		s = string(sign) + s[2:]
		skip = 1
	}
	if sign == '+' {
		s, skip = s[1:], skip+1
	}
	open := strings.IndexByte(s, '(')
	if open < 0 {
		return x, p.fail(pos, expr, reasonDerefBrace)
	}
	off, ok := kstrtoll(s[:open], 0)
	if !ok || off != int64(int32(off)) {
		// tracefs keeps the offset in an int: larger ones are cut; we
		// refuse them.
		return x, p.fail(pos, expr, reasonBadDerefOffs)
	}
	innerPos := pos + skip + open + 1
	inner := s[open+1:]
	cl := strings.LastIndexByte(inner, ')')
	if cl < 0 {
		return x, p.fail(innerPos+len(inner), expr, reasonDerefOpen)
	}
	if cl != len(inner)-1 {
		// tracefs ignores what follows the last ')'; we refuse it.
		return x, p.fail(innerPos+cl+1, inner[cl+1:], reasonDerefTrailing)
	}
	inner = inner[:cl]
	x, err := p.parseExpr(inner, innerPos)
	if err != nil {
		return x, err
	}
	if len(x.derefs) == 0 && (x.base == opComm || x.base == opData) {
		return x, p.fail(innerPos, inner, reasonCommCantDeref)
	}
	if p.derefs++; p.derefs > MaxDerefs {
		return x, p.fail(pos, expr, reasonTooManyOps)
	}
	x.derefs = append(x.derefs, int32(off))
	return x, nil
}

// parseBitfield parses the b<width>@<offset>/<container> type (its
// container was checked by lookupType), as __parse_bitfield_probe_arg.
func (p *parser) parseBitfield(t *typeInfo, tname string, pos, derefs int) error {
	bad := p.fail(pos, tname, reasonBadBitfield)
	bw, rest := simpleStrtoul(tname[1:])
	if bw == 0 || rest == "" || rest[0] != '@' {
		return bad
	}
	bo, rest2 := simpleStrtoul(rest[1:])
	if len(rest2) == len(rest)-1 || rest2 == "" || rest2[0] != '/' {
		return bad
	}
	bits := uint64(t.size) * 8
	if bw > bits || bo > bits || bw+bo > bits || derefs == MaxDerefs {
		// The last condition: the bitfield instruction needs a slot of
		// the 16 that tracefs no longer has.
		return bad
	}
	t.lshift = uint8(bits - bw - bo)
	t.rshift = uint8(bits - bw)
	return nil
}
