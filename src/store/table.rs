//! Tables a domain declares and owns: a sled tree, and whether its values
//! are sealed. The store knows no domain's types; each domain keeps its
//! table, its key codec and its value types beside the code that uses
//! them (the cases in [`crate::case`], the ledger in [`crate::ledger`]).

/// One tree of the store.
#[derive(Debug)]
pub struct Table {
    pub(super) name: &'static str,
    /// Sealed values are bound to this prefix and their key (XChaCha20-
    /// Poly1305 associated data), so a value moved to another key or
    /// another table does not open.
    pub(super) sealed: Option<&'static [u8]>,
}

impl Table {
    /// A table whose values are stored as given (indexes, counters,
    /// metadata that names no content).
    pub const fn plain(name: &'static str) -> Table {
        Table { name, sealed: None }
    }

    /// A table whose values are sealed with the store key, bound to
    /// `aad_prefix` and their key.
    pub const fn sealed(name: &'static str, aad_prefix: &'static [u8]) -> Table {
        Table {
            name,
            sealed: Some(aad_prefix),
        }
    }

    /// The associated data of the value under `key`, if sealed.
    pub(super) fn slot(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sealed.map(|prefix| [prefix, key].concat())
    }
}

/// An append-only hash chain kept in two plain tables: entries, and a
/// head that each append reads and moves inside the transaction, so
/// concurrent transactions conflict and retry and the chain stays one.
pub trait Chain: Sync {
    /// The table of entries.
    fn entries(&self) -> &'static Table;
    /// The table and key of the head.
    fn head(&self) -> (&'static Table, &'static [u8]);
    /// Links `items` (in order) after `head` (`None` before the first
    /// append): the new head and the entries to insert, by key.
    fn link(
        &self,
        head: Option<&[u8]>,
        items: &[Vec<u8>],
    ) -> Result<(Vec<u8>, Vec<super::KeyValue>), String>;
}
