//! Test guest: a valid component for another world (`other:thing/greeter`), which the host must
//! refuse to deploy as a Stepwise handler. It uses wit-bindgen directly, not the SDK.

#![allow(
    unsafe_code,
    reason = "the bindings generated here contain the canonical ABI glue, which is unsafe"
)]

wit_bindgen::generate!({
    inline: "
        package other:thing;

        world greeter {
            export hello: func() -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn hello() -> String {
        "hello from another world".to_owned()
    }
}

export!(Greeter);
