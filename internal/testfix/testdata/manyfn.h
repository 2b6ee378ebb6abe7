/* manyfn.h: MANY_FNS is the assembly of 1,000 functions many_0 ..
 * many_999, each "push %rbp; pop %rbp; ret" and 16-byte aligned: probe
 * sites by the thousand, for the wildcard and batch fixture (glob.c) and
 * the benchmark workload (bench/testdata/workload.c). Put it in a
 * top-level __asm__(), in the .text section. */
#define MANY_FNS                          \
    ".altmacro\n"                         \
    ".macro manyfn n\n"                   \
    "  .p2align 4\n"                      \
    "  .globl many_\\n\n"                 \
    "  .type many_\\n,@function\n"        \
    "many_\\n:\n"                         \
    "  push %rbp\n"                       \
    "  pop %rbp\n"                        \
    "  ret\n"                             \
    "  .size many_\\n,.-many_\\n\n"       \
    ".endm\n"                             \
    ".set i,0\n"                          \
    ".rept 1000\n"                        \
    "  manyfn %i\n"                       \
    "  .set i,i+1\n"                      \
    ".endr\n"                             \
    ".noaltmacro\n"
