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
    let (kind, with_params) = parse_args(args)?;
    check_signature(kind, item, with_params)?;

    let user_fn = &item.sig.ident;
    let (export_name, driver) = kind.export();
    let driver = Ident::new(driver, Span::call_site());
    // Spanned at the user's signature so that a type mismatch, reported by
    // the glue's signature trait, points at the function the user wrote.
    let span = item.sig.span();
    let call = match kind {
        Kind::Init => quote_spanned!(span=> ::fluvio_smartmodule::__private::init(#user_fn)),
        _ if with_params => {
            let options = options_type(item)?;
            let function = match kind {
                Kind::Aggregate => quote_spanned!(span=>
                    |accumulator: ::fluvio_smartmodule::RecordData, record: &::fluvio_smartmodule::Record|
                        #user_fn(accumulator, record, &options)),
                _ => quote_spanned!(span=> |record: &::fluvio_smartmodule::Record| #user_fn(record, &options)),
            };
            quote_spanned!(span=> {
                let options: #options = ::fluvio_smartmodule::__private::typed_params();
                ::fluvio_smartmodule::__private::#driver(input_len, flags, #function)
            })
        }
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

/// The kind, and whether `params` follows it (Fluvio's typed parameters:
/// the function takes a `&T` last, `T` built from the module's parameters
/// through `TryFrom`, as `#[derive(SmartOpt)]` writes it).
fn parse_args(args: TokenStream2) -> syn::Result<(Kind, bool)> {
    let mut parts: Vec<TokenStream2> = Vec::new();
    let mut current = TokenStream2::new();
    for token in args.clone() {
        match &token {
            proc_macro2::TokenTree::Punct(punct) if punct.as_char() == ',' => {
                parts.push(std::mem::take(&mut current));
            }
            _ => current.extend([token]),
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    match parts.as_slice() {
        [kind] => Ok((parse_kind(kind.clone())?, false)),
        [kind, flag] if flag.to_string() == "params" => {
            let kind = parse_kind(kind.clone())?;
            if matches!(kind, Kind::Init | Kind::LookBack) {
                return Err(syn::Error::new(
                    flag.span(),
                    format!("`params` goes with a record function; #[smartmodule({})] takes none", kind.attribute()),
                ));
            }
            Ok((kind, true))
        }
        [_, flag] if syn::parse2::<Ident>(flag.clone()).is_ok_and(|ident| Kind::parse(&ident).is_some()) => {
            Err(syn::Error::new(args.span(), format!("expected one SmartModule kind: {KINDS}")))
        }
        [_, flag] => Err(syn::Error::new(
            flag.span(),
            format!("unknown option `{flag}`; the one option is `params`, as in #[smartmodule(filter, params)]"),
        )),
        _ => parse_kind(args).map(|kind| (kind, false)),
    }
}

/// `T` of the `&T` a function with `params` takes last.
fn options_type(item: &ItemFn) -> syn::Result<syn::Type> {
    let last = item.sig.inputs.last().expect("the argument count was checked");
    if let syn::FnArg::Typed(typed) = last
        && let syn::Type::Reference(reference) = typed.ty.as_ref()
        && reference.mutability.is_none()
    {
        return Ok((*reference.elem).clone());
    }
    Err(syn::Error::new(
        last.span(),
        "with `params` the last argument is `&T`, where T is built from the parameters (#[derive(Default, SmartOpt)])",
    ))
}

fn check_signature(kind: Kind, item: &ItemFn, with_params: bool) -> syn::Result<()> {
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
    if sig.inputs.len() != kind.argument_count() + usize::from(with_params) {
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

/// Fluvio's `#[derive(SmartOpt)]`: builds a struct of typed options from a
/// module's parameters, through `TryFrom<SmartModuleExtraParams>`. Each
/// named field is set from the parameter of its name, parsed with
/// `FromStr` (an `Option<T>` field parses `T`); a parameter not given
/// leaves the field at its `Default`, so the struct must implement it. A
/// value that does not parse is an error naming the parameter.
///
/// ```ignore
/// #[derive(Default, SmartOpt)]
/// pub struct FilterOpt { key: String, limit: Option<u32> }
///
/// #[smartmodule(filter, params)]
/// pub fn filter(record: &Record, opt: &FilterOpt) -> Result<bool> { ... }
/// ```
#[proc_macro_derive(SmartOpt)]
pub fn smart_opt(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as syn::DeriveInput);
    match smart_opt_impl(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn smart_opt_impl(input: &syn::DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let syn::Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(name.span(), "#[derive(SmartOpt)] is for structs with named fields"));
    };
    let mut settings = Vec::new();
    for field in &data.fields {
        let Some(ident) = &field.ident else {
            return Err(syn::Error::new(field.span(), "#[derive(SmartOpt)] is for structs with named fields"));
        };
        let key = ident.to_string();
        let parsed = option_inner(&field.ty).unwrap_or(&field.ty);
        let type_name = quote!(#parsed).to_string().replace(' ', "");
        settings.push(quote! {
            if let ::std::option::Option::Some(text) = params.get(#key) {
                let value: #parsed = text.parse().map_err(|_| {
                    ::std::format!("parameter {:?}: cannot read {:?} as {}", #key, text, #type_name)
                })?;
                options.#ident = value.into();
            }
        });
    }
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::std::convert::TryFrom<::fluvio_smartmodule::SmartModuleExtraParams>
            for #name #type_generics #where_clause
        {
            type Error = ::std::string::String;

            fn try_from(
                params: ::fluvio_smartmodule::SmartModuleExtraParams,
            ) -> ::std::result::Result<Self, Self::Error> {
                let mut options = <Self as ::std::default::Default>::default();
                #(#settings)*
                ::std::result::Result::Ok(options)
            }
        }
    })
}

/// `T` of an `Option<T>` field.
fn option_inner(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(path) = ty else { return None };
    let segment = path.path.segments.last()?;
    if segment.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(arguments) = &segment.arguments else { return None };
    match arguments.args.first()? {
        syn::GenericArgument::Type(inner) if arguments.args.len() == 1 => Some(inner),
        _ => None,
    }
}
