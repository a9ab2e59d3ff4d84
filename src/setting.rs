//! Settings as messages name them. A message that asks the user to change a setting names it with
//! [`Setting`]: as its field of the run configuration (`lr`, `val_fraction`: what an app that
//! embeds tailor sets in [`crate::run::RunSettings`]) or, once the command line has chosen
//! [`Naming::Flags`] with [`name_settings_as`], as the flag that sets it (`--lr`,
//! `--val-fraction`). One process speaks one way, so messages built on any thread (the loader's
//! workers included) agree, and errors wrapped into other errors keep their names.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// How [`Setting`]s are written in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// Run-configuration field names (`val_fraction`): the library's default.
    Fields,
    /// Command-line flags (`--val-fraction`): the `tailor` command's.
    Flags,
}

static NAMING: AtomicU8 = AtomicU8::new(0);

/// Chooses how this process's messages name settings (the CLI chooses flags at start-up).
pub fn name_settings_as(naming: Naming) {
    NAMING.store(naming as u8, Ordering::Relaxed);
}

/// How this process's messages name settings.
pub fn naming() -> Naming {
    if NAMING.load(Ordering::Relaxed) == Naming::Flags as u8 {
        Naming::Flags
    } else {
        Naming::Fields
    }
}

macro_rules! settings {
    ($($id:ident => $field:literal $(as $flag:literal)?),* $(,)?) => {
        /// A setting a message can ask the user to change.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Setting { $($id),* }

        impl Setting {
            /// Its field in the run configuration (`val_fraction`, `embedding.dim`).
            pub fn field(self) -> &'static str {
                match self { $(Setting::$id => $field),* }
            }

            /// Its command-line flag where it is not the field's name with dashes.
            fn own_flag(self) -> Option<&'static str> {
                match self { $(Setting::$id => None $(.or(Some($flag)))?),* }
            }
        }
    };
}

settings! {
    Data => "data",
    LabelColumn => "label_column",
    LabelColumns => "label_columns",
    TagsColumn => "tags_column",
    TagSep => "tag_sep",
    ImageColumn => "image_column",
    ImageDir => "image_dir",
    ImageSize => "image_size",
    ValFraction => "val_fraction",
    SplitBy => "split_by",
    Imbalance => "imbalance",
    MinSamples => "min_samples",
    Seed => "seed",
    Task => "task",
    Arch => "arch",
    GrowthRate => "growth_rate",
    Blocks => "blocks",
    BnSize => "bn_size",
    Loss => "loss",
    Weighting => "weighting",
    Beta => "beta",
    FocalGamma => "focal_gamma",
    Optimizer => "optimizer",
    Lr => "lr",
    WeightDecay => "weight_decay",
    Schedule => "schedule",
    LrStep => "lr_step",
    LrGamma => "lr_gamma",
    Warmup => "warmup",
    BatchSize => "batch_size",
    Accumulate => "accumulate",
    Devices => "devices",
    DeviceShares => "device_shares",
    Epochs => "epochs",
    Init => "init",
    Out => "out",
    Overwrite => "overwrite",
    Resume => "resume",
    MinPrecision => "min_precision",
    Model => "model",
    BestBy => "best_by",
    Patience => "patience",
    EmbeddingDim => "embedding.dim" as "--embedding-dim",
    Margin => "embedding.margin" as "--margin",
    P => "embedding.p" as "--p",
    K => "embedding.k" as "--k",
    VerticalColumn => "vertical_column",
    Verticals => "verticals" as "--vertical",
    Teachers => "teachers" as "--teacher",
    Weights => "weights",
}

impl Setting {
    /// Its command-line flag (`--val-fraction`).
    pub fn flag(self) -> String {
        self.own_flag().map_or_else(|| format!("--{}", self.field().replace('_', "-")), str::to_string)
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match naming() {
            Naming::Fields => f.write_str(self.field()),
            Naming::Flags => f.write_str(&self.flag()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_fields_with_dashes() {
        assert_eq!(Setting::ValFraction.field(), "val_fraction");
        assert_eq!(Setting::ValFraction.flag(), "--val-fraction");
        assert_eq!(Setting::Lr.flag(), "--lr");
        assert_eq!(
            (Setting::EmbeddingDim.field(), Setting::EmbeddingDim.flag().as_str()),
            ("embedding.dim", "--embedding-dim")
        );
    }
}
