# Short functions for the concurrency test: 7 bytes, just above the 5-byte jump,
# so threads are often stopped inside the bytes the jump replaces.
        .intel_syntax noprefix
        .text
        .macro SHORTFN name, k
        .globl \name
        .type \name, @function
        .p2align 4
\name:
        .cfi_startproc
        lea eax, [rdi + rdi*2]   # [0] 8d 04 7f
        add eax, \k              # [3] 83 c0 k
        ret                      # [6] c3
        .cfi_endproc
        .size \name, .-\name
        .endm
        SHORTFN conc_short, 0
        SHORTFN conc_short_v1, 1
        SHORTFN conc_short_v2, 2
        SHORTFN conc_short_v3, 3
        .section .note.GNU-stack,"",@progbits
