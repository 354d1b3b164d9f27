//! `#[managed]`: makes a type usable in a `multiproc` manager's server (CPython
//! `BaseManager.register(typeid, callable, exposed=...)`), with a typed proxy.
//!
//! Put it on the type's `impl` block. Every `pub fn` taking `&self` or `&mut self` is exposed:
//! it runs in the server, called through the proxy `<Type>Proxy`, whose method of the same name
//! takes the same (owned, serde) arguments and returns `multiproc::Result<R>`. A method returning
//! `Result<T, E>` (with `E: Display`) gives the proxy `multiproc::Result<T>`, and its error comes
//! back as `multiproc::Error::Remote` with `E`'s message. Use it through `multiproc::managed`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{
    FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, ItemImpl, Pat, PathArguments, ReturnType, Type, Visibility,
    parse_macro_input,
};

/// Exposes a type's `pub` methods to manager proxies; see the crate documentation.
#[proc_macro_attribute]
pub fn managed(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Span::call_site(), "#[managed] takes no arguments").to_compile_error().into();
    }
    let block = parse_macro_input!(item as ItemImpl);
    match expand(&block) {
        Ok(tokens) => quote!(#block #tokens).into(),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#block #e).into()
        }
    }
}

/// One exposed method.
struct Method<'a> {
    name: &'a Ident,
    args: Vec<(Ident, &'a Type)>,
    /// The proxy's value type, and whether the method returns a `Result`.
    output: Type,
    fallible: bool,
    docs: Vec<&'a syn::Attribute>,
}

fn expand(block: &ItemImpl) -> syn::Result<TokenStream2> {
    if block.trait_.is_some() || !block.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &block.self_ty,
            "#[managed] goes on a type's own impl block, for a type without generic parameters",
        ));
    }
    let self_ty = &block.self_ty;
    let type_name = type_ident(self_ty)?;
    let proxy = format_ident!("{}Proxy", type_name);
    let type_name_str = type_name.to_string();
    let methods: Vec<Method<'_>> = block
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Fn(f) if exposed(f) => Some(method(f)),
            _ => None,
        })
        .collect::<syn::Result<_>>()?;

    let arms = methods.iter().map(|m| {
        let name = m.name;
        let name_str = name.to_string();
        let arg_names: Vec<_> = m.args.iter().map(|(n, _)| n).collect();
        let arg_types: Vec<_> = m.args.iter().map(|(_, t)| t).collect();
        let result = if m.fallible {
            quote! {
                match outcome {
                    ::core::result::Result::Ok(value) => support::encode_result(&value),
                    ::core::result::Result::Err(error) => ::core::result::Result::Err(::std::string::ToString::to_string(&error)),
                }
            }
        } else {
            quote!(support::encode_result(&outcome))
        };
        quote! {
            #name_str => {
                let (#(#arg_names,)*): (#(#arg_types,)*) = support::decode_args(method, args)?;
                let outcome = self.#name(#(#arg_names),*);
                #result
            }
        }
    });

    let proxy_methods = methods.iter().map(|m| {
        let name = m.name;
        let name_str = name.to_string();
        let output = &m.output;
        let params = m.args.iter().map(|(n, t)| quote!(#n: #t));
        let arg_names: Vec<_> = m.args.iter().map(|(n, _)| n).collect();
        let docs = &m.docs;
        quote! {
            #(#docs)*
            pub fn #name(&self, #(#params),*) -> ::multiproc::Result<#output> {
                self.0.call_method(#name_str, &(#(#arg_names,)*))
            }
        }
    });

    let method_names = methods.iter().map(|m| m.name.to_string());
    let proxy_doc = format!("A proxy for a [`{type_name_str}`] in a manager's server (made by `#[managed]`).");
    Ok(quote! {
        const _: () = {
            use ::multiproc::manager::__macro_support as support;

            impl ::multiproc::manager::Managed for #self_ty {
                const TYPE_NAME: &'static str = #type_name_str;
                const METHODS: &'static [&'static str] = &[#(#method_names),*];
                type Proxy = #proxy;

                fn call_method(&mut self, method: &str, args: &[u8]) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    match method {
                        #(#arms)*
                        _ => ::core::result::Result::Err(::std::format!(
                            "AttributeError: {} exposes no method {:?}", #type_name_str, method
                        )),
                    }
                }
            }

            impl ::core::convert::From<::multiproc::manager::ObjectProxy> for #proxy {
                fn from(proxy: ::multiproc::manager::ObjectProxy) -> Self {
                    #proxy(proxy)
                }
            }

            impl support::serde::Serialize for #proxy {
                fn serialize<S: support::serde::Serializer>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error> {
                    support::serde::Serialize::serialize(&self.0, serializer)
                }
            }

            impl<'de> support::serde::Deserialize<'de> for #proxy {
                fn deserialize<D: support::serde::Deserializer<'de>>(deserializer: D) -> ::core::result::Result<Self, D::Error> {
                    <::multiproc::manager::ObjectProxy as support::serde::Deserialize<'de>>::deserialize(deserializer).map(#proxy)
                }
            }
        };

        #[doc = #proxy_doc]
        #[derive(Debug, Clone)]
        pub struct #proxy(pub ::multiproc::manager::ObjectProxy);

        impl #proxy {
            #(#proxy_methods)*
        }
    })
}

fn type_ident(ty: &Type) -> syn::Result<&Ident> {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map(|s| &s.ident).ok_or_else(|| syn::Error::new_spanned(ty, "a type name"))
        }
        _ => Err(syn::Error::new_spanned(ty, "#[managed] needs a named type")),
    }
}

/// `pub fn` with a `self` receiver.
fn exposed(f: &ImplItemFn) -> bool {
    matches!(f.vis, Visibility::Public(_)) && f.sig.receiver().is_some()
}

fn method(f: &ImplItemFn) -> syn::Result<Method<'_>> {
    let sig = &f.sig;
    if !sig.generics.params.is_empty() || sig.asyncness.is_some() {
        return Err(syn::Error::new_spanned(sig, "an exposed method cannot be generic or async"));
    }
    if let Some(receiver) = sig.receiver()
        && receiver.reference.is_none()
    {
        return Err(syn::Error::new_spanned(receiver, "an exposed method takes &self or &mut self"));
    }
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(typed) = input else { continue };
        if let Type::Reference(r) = &*typed.ty {
            return Err(syn::Error::new_spanned(r, "arguments of an exposed method travel by value: take owned types"));
        }
        let name = match &*typed.pat {
            Pat::Ident(p) => p.ident.clone(),
            _ => format_ident!("arg{}", i),
        };
        args.push((name, &*typed.ty));
    }
    let (output, fallible) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), false),
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => (ok.clone(), true),
            None => ((**ty).clone(), false),
        },
    };
    let docs = f.attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    Ok(Method { name: &sig.ident, args, output, fallible, docs })
}

/// `T` for a return type spelled `Result<T, ..>` (any path ending in `Result`).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else { return None };
    match generics.args.first()? {
        GenericArgument::Type(ok) => Some(ok),
        _ => None,
    }
}
