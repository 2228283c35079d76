//! The `#[smartmodule(...)]` attribute, re-exported by `fluvio-smartmodule`.
//!
//! It leaves the user's function as it is, so it stays callable (and unit
//! testable) natively, and adds a hidden export that connects it to the ABI
//! glue in `fluvio_smartmodule::__private`. It checks only what it can see:
//! the kind, the item, the number of arguments. Types are checked by the
//! compiler through the glue's signature traits, whose messages name the
//! expected signature. It never panics: every mistake is a `compile_error!`
//! pointing at the user's code.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, parse_macro_input};

const KINDS: &str = "filter, map, filter_map, array_map, aggregate, init or look_back";

#[derive(Clone, Copy)]
enum Kind {
    Filter,
    Map,
    FilterMap,
    ArrayMap,
    Aggregate,
    Init,
    LookBack,
}

impl Kind {
    fn parse(ident: &Ident) -> Option<Kind> {
        Some(match ident.to_string().as_str() {
            "filter" => Kind::Filter,
            "map" => Kind::Map,
            "filter_map" => Kind::FilterMap,
            "array_map" => Kind::ArrayMap,
            "aggregate" => Kind::Aggregate,
            "init" => Kind::Init,
            "look_back" => Kind::LookBack,
            _ => return None,
        })
    }

    fn attribute(self) -> &'static str {
        match self {
            Kind::Filter => "filter",
            Kind::Map => "map",
            Kind::FilterMap => "filter_map",
            Kind::ArrayMap => "array_map",
            Kind::Aggregate => "aggregate",
            Kind::Init => "init",
            Kind::LookBack => "look_back",
        }
    }

    fn expected_signature(self) -> &'static str {
        match self {
            Kind::Filter => "fn(&Record) -> Result<bool>",
            Kind::Map => "fn(&Record) -> Result<(Option<RecordData>, RecordData)>",
            Kind::FilterMap => "fn(&Record) -> Result<Option<(Option<RecordData>, RecordData)>>",
            Kind::ArrayMap => "fn(&Record) -> Result<Vec<(Option<RecordData>, RecordData)>>",
            Kind::Aggregate => "fn(RecordData, &Record) -> Result<RecordData>",
            Kind::Init => "fn(SmartModuleExtraParams) -> Result<()>",
            Kind::LookBack => "fn(&Record) -> Result<()>",
        }
    }

    fn argument_count(self) -> usize {
        match self {
            Kind::Aggregate => 2,
            _ => 1,
        }
    }

    /// The export and the glue driver for this kind.
    fn export(self) -> (&'static str, &'static str) {
        match self {
            Kind::Filter => ("fluvio_filter", "run_filter"),
            Kind::Map => ("fluvio_map", "run_map"),
            Kind::FilterMap => ("fluvio_filter_map", "run_filter_map"),
            Kind::ArrayMap => ("fluvio_array_map", "run_array_map"),
            Kind::Aggregate => ("fluvio_aggregate", "run_aggregate"),
            Kind::Init => ("fluvio_init", "init"),
            Kind::LookBack => ("fluvio_look_back", "run_look_back"),
        }
    }
}

/// Turns a function into a SmartModule of the given kind.
///
/// ```ignore
/// #[smartmodule(map)]
/// pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> { ... }
/// ```
///
/// Kinds: `filter`, `map`, `filter_map`, `array_map`, `aggregate`; `init`
/// for a function that receives the module's parameters once; and
/// `look_back` for a function fed stored records before a stream starts.
#[proc_macro_attribute]
pub fn smartmodule(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = TokenStream2::from(args);
    let item = parse_macro_input!(input as ItemFn);
    match expand(args, &item) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            let error = error.to_compile_error();
            // Keep the user's function so that one mistake does not cascade
            // into "cannot find function" errors elsewhere.
            quote!(#item #error).into()
        }
    }
}

fn expand(args: TokenStream2, item: &ItemFn) -> syn::Result<TokenStream2> {
    let kind = parse_kind(args)?;
    check_signature(kind, item)?;

    let user_fn = &item.sig.ident;
    let (export_name, driver) = kind.export();
    let driver = Ident::new(driver, Span::call_site());
    // Spanned at the user's signature so that a type mismatch, reported by
    // the glue's signature trait, points at the function the user wrote.
    let span = item.sig.span();
    let call = match kind {
        Kind::Init => quote_spanned!(span=> ::fluvio_smartmodule::__private::init(#user_fn)),
        _ => quote_spanned!(span=> ::fluvio_smartmodule::__private::#driver(input_len, flags, #user_fn)),
    };
    let params = match kind {
        Kind::Init => quote!(),
        _ => quote!(input_len: i32, flags: i32),
    };
    Ok(quote! {
        #item

        const _: () = {
            #[allow(dead_code)]
            #[cfg_attr(target_arch = "wasm32", unsafe(export_name = #export_name))]
            extern "C" fn __fluvio_smartmodule_export(#params) -> i64 {
                #call
            }
        };
    })
}

fn parse_kind(args: TokenStream2) -> syn::Result<Kind> {
    if args.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("#[smartmodule] needs a kind, for example #[smartmodule(filter)]; the kinds are {KINDS}"),
        ));
    }
    let ident: Ident = syn::parse2(args.clone())
        .map_err(|_| syn::Error::new(args.span(), format!("expected one SmartModule kind: {KINDS}")))?;
    Kind::parse(&ident).ok_or_else(|| {
        let hint = match ident.to_string().as_str() {
            "filtermap" | "filterMap" | "FilterMap" => " (did you mean filter_map?)",
            "arraymap" | "arrayMap" | "ArrayMap" => " (did you mean array_map?)",
            "lookback" | "lookBack" | "LookBack" => " (did you mean look_back?)",
            _ => "",
        };
        syn::Error::new(ident.span(), format!("unknown SmartModule kind `{ident}`{hint}; the kinds are {KINDS}"))
    })
}

fn check_signature(kind: Kind, item: &ItemFn) -> syn::Result<()> {
    let sig = &item.sig;
    let expected = kind.expected_signature();
    let attribute = kind.attribute();
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            format!("a SmartModule function cannot be async; #[smartmodule({attribute})] expects `{expected}`"),
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span(),
            format!("a SmartModule function cannot be unsafe; #[smartmodule({attribute})] expects `{expected}`"),
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!("a SmartModule function cannot be generic; #[smartmodule({attribute})] expects `{expected}`"),
        ));
    }
    if sig.inputs.len() != kind.argument_count() {
        let found = sig.inputs.len();
        let span = if found == 0 { sig.paren_token.span.join() } else { sig.inputs.span() };
        return Err(syn::Error::new(
            span,
            format!(
                "#[smartmodule({attribute})] expects `{expected}`, but this function takes {found} argument{}",
                if found == 1 { "" } else { "s" }
            ),
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new(
            receiver.span(),
            format!("a SmartModule function cannot take `self`; #[smartmodule({attribute})] expects `{expected}`"),
        ));
    }
    if let syn::ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            sig.paren_token.span.join(),
            format!("#[smartmodule({attribute})] expects `{expected}`, but this function returns nothing"),
        ));
    }
    Ok(())
}
