#![no_std]
// The library target lets the workspace resolve this package; the programs are the
// `shoal-tc` binary (src/main.rs), built for bpfel by agent/build.rs through aya-build.
