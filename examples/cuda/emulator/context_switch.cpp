// The emulator's fiber switch on x86-64 (System V): saves the callee-saved
// registers, MXCSR and the x87 control word on the current stack, stores the
// stack pointer in *save, and resumes the stack `load`. No system call,
// unlike swapcontext (which also saves the signal mask).
#if defined(__x86_64__)
asm(R"(
    .text
    .globl chimera_emulator_switch
    .type chimera_emulator_switch, @function
chimera_emulator_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size chimera_emulator_switch, .-chimera_emulator_switch
    .section .note.GNU-stack, "", @progbits
)");
#endif
