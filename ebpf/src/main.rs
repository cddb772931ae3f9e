//! shoal's TC programs. For now a pass-through classifier that proves the toolchain end to
//! end (nightly, rust-src, bpf-linker); the load balancer lands here (see DESIGN.md).
#![no_std]
#![no_main]

use aya_ebpf::bindings::TC_ACT_OK;
use aya_ebpf::macros::classifier;
use aya_ebpf::programs::TcContext;

#[classifier]
pub fn shoal_pass(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
