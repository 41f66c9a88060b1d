//! Binding storage (arena + AoR table).
