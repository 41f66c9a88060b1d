//! The glommio UDP shell around the registrar core.
