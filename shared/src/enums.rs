//! `listed_enum!`: a fieldless enum whose `ALL` constant is generated from
//! the variant list itself, so a new variant can never be left out of it
//! (code that iterates `ALL`, such as parsing names back, retraining every
//! target or documenting every kind, would otherwise miss it silently).

/// Declares the enum as written and `pub const ALL: [Self; N]` listing
/// every variant in declaration order.
#[macro_export]
macro_rules! listed_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant),*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; <[$name]>::len(&[$($name::$variant),*])] =
                [$($name::$variant),*];
        }
    };
}
