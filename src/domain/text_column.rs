//! Domain enums stored in text columns (constrained by CHECKs in the migrations): bound and
//! read as themselves, so rows and queries carry the enum, never its spelling. Decoding a
//! value the enum does not know is an error (the CHECKs make it unreachable); nothing falls
//! back to a default.

/// `sqlx::Type`, `Encode` and `Decode` for enums with `as_str()` and
/// `parse(&str) -> Result<Self, Invalid>`, over PostgreSQL `text`.
macro_rules! text_column {
    ($($ty:ty),+ $(,)?) => {$(
        impl sqlx::Type<sqlx::Postgres> for $ty {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $ty {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<$ty>::parse(<&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?)?)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
    )+};
}

text_column!(super::Role, super::UserStatus, super::DealStage, super::Plan, super::TenantStatus);
