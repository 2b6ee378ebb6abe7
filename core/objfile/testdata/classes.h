/* Global asm functions, one per step-over class and refusal: the first
 * instruction of each is the one the tests analyse. They are never called.
 * FN(name) opens a function symbol with a size and an unwind entry (END),
 * as a compiler's function has. */
#define FN(n) ".globl " #n "\n.type " #n ",@function\n" #n ":\n.cfi_startproc\n"
#define END(n) "\n.cfi_endproc\n.size " #n ", .-" #n "\n"

__asm__(
	".data\n"
	".p2align 4\n"
	"fixdata: .quad 0x1122334455667788, 0\n"
	"fixptr: .quad 0\n"
	".text\n"
	/* emulated */
	FN(cls_nop) "nop\nret" END(cls_nop)
	FN(cls_nopl) "nopl 0x0(%rax,%rax,1)\nret" END(cls_nopl)
	FN(cls_endbr64) "endbr64\nret" END(cls_endbr64)
	FN(cls_push_rbx) "push %rbx\npop %rbx\nret" END(cls_push_rbx)
	FN(cls_push_r12) "push %r12\npop %r12\nret" END(cls_push_r12)
	FN(cls_mov) "mov %rsp,%rbp\nret" END(cls_mov)
	FN(cls_mov32) "mov %esi,%eax\nret" END(cls_mov32)
	FN(cls_lea) "lea 0x8(%rdi,%rsi,4),%rax\nret" END(cls_lea)
	FN(cls_lea_rip) "lea fixdata(%rip),%rax\nret" END(cls_lea_rip)
	FN(cls_sub_rsp) "sub $0x18,%rsp\nadd $0x18,%rsp\nret" END(cls_sub_rsp)
	FN(cls_add_rsp) "add $0x108,%rsp\nret" END(cls_add_rsp)
	FN(cls_jmp) "jmp 1f\n1: ret" END(cls_jmp)
	FN(cls_jmp32) ".byte 0xe9\n.long 0\nret" END(cls_jmp32)
	FN(cls_call) "call cls_nop\nret" END(cls_call)
	FN(cls_jcc) "jne 1f\n1: ret" END(cls_jcc)
	FN(cls_jcc32) ".byte 0x0f,0x84\n.long 0\nret" END(cls_jcc32)
	FN(cls_call_reg) "call *%rax\nret" END(cls_call_reg)
	FN(cls_call_rip) "call *fixptr(%rip)\nret" END(cls_call_rip)
	FN(cls_jmp_reg) "jmp *%rax" END(cls_jmp_reg)
	FN(cls_jmp_rip) "jmp *fixptr(%rip)" END(cls_jmp_rip)
	FN(cls_ret) "ret" END(cls_ret)
	FN(cls_loop) "1: loop 1b\nret" END(cls_loop)
	FN(cls_jrcxz) "jrcxz 1f\n1: ret" END(cls_jrcxz)
	/* out of line */
	FN(cls_slot_imm) "mov $0x12345678,%eax\nret" END(cls_slot_imm)
	FN(cls_slot_xor) "xor %eax,%eax\nret" END(cls_slot_xor)
	FN(cls_slot_load) "mov fixdata(%rip),%rax\nret" END(cls_slot_load)
	FN(cls_slot_store) "mov %rax,fixdata(%rip)\nret" END(cls_slot_store)
	FN(cls_slot_cmp) "cmpl $0x5,fixdata(%rip)\nret" END(cls_slot_cmp)
	FN(cls_slot_andn) "andn fixdata(%rip),%rax,%rbx\nret" END(cls_slot_andn)
	FN(cls_slot_push16) "pushw $0x1234\nret" END(cls_slot_push16)
	FN(cls_slot_fs) "mov %fs:0x28,%rax\nret" END(cls_slot_fs)
	/* refused */
	FN(ref_int3) "int3\nret" END(ref_int3)
	FN(ref_int80) "int $0x80\nret" END(ref_int80)
	FN(ref_icebp) ".byte 0xf1\nret" END(ref_icebp)
	FN(ref_hlt) "hlt\nret" END(ref_hlt)
	FN(ref_cli) "cli\nret" END(ref_cli)
	FN(ref_sti) "sti\nret" END(ref_sti)
	FN(ref_syscall) "syscall\nret" END(ref_syscall)
	FN(ref_sysenter) "sysenter\nret" END(ref_sysenter)
	FN(ref_ud2) "ud2\nret" END(ref_ud2)
	FN(ref_in) "in (%dx),%al\nret" END(ref_in)
	FN(ref_out) "out %al,(%dx)\nret" END(ref_out)
	FN(ref_insb) "insb (%dx),%es:(%rdi)\nret" END(ref_insb)
	FN(ref_outsb) "outsb %ds:(%rsi),(%dx)\nret" END(ref_outsb)
	FN(ref_iret) "iretq\nret" END(ref_iret)
	FN(ref_lock) "lock incl fixdata(%rip)\nret" END(ref_lock)
	FN(ref_es) ".byte 0x26\nmov (%rax),%eax\nret" END(ref_es)
	FN(ref_cs) ".byte 0x2e\nmov (%rax),%eax\nret" END(ref_cs)
	FN(ref_ss) ".byte 0x36\nmov (%rax),%eax\nret" END(ref_ss)
	FN(ref_ds) ".byte 0x3e\nmov (%rax),%eax\nret" END(ref_ds)
	FN(ref_notrack) "notrack jmp *%rax" END(ref_notrack)
	FN(ref_movss) "mov %eax,%ss\nret" END(ref_movss)
	FN(ref_ljmp) "ljmp *(%rax)" END(ref_ljmp)
	FN(ref_lcall) "lcall *(%rax)\nret" END(ref_lcall)
	FN(ref_xbegin) "xbegin 1f\n1: ret" END(ref_xbegin)
	FN(ref_bad) ".byte 0x06\nret" END(ref_bad)
	FN(ref_into) ".byte 0xce\nret" END(ref_into)
	/* instruction boundaries: movabs is 10 bytes */
	FN(bnd_movabs) "movabs $0x1122334455667788,%rax\nnop\nret" END(bnd_movabs)
	/* a label without .size (nor unwind entry: stripped, no instruction
	 * start is known there) */
	".globl nosize\n.type nosize,@function\nnosize: nop\nret\n"
);
