//! The entry points of the kernel shaders, generated from `shaders/` by
//! `TAILOR_REGEN=1 cargo test --lib gpu::template` (do not edit by hand): one enum per shader of
//! [`shaders::ALL`], a variant per `@compute` entry point in source order. A test
//! (`gpu::template::tests::generated_entry_table_matches_the_shaders`) parses every shader with
//! naga and fails when this file is out of date, so a launch names an entry point that exists,
//! of the shader it names, or does not compile.

use super::shaders::{self, Shader};

/// The entry points of `shaders/conv.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvEntry {
    /// `weights_3x3_t`
    Weights3x3T,
    /// `forward`
    Forward,
    /// `forward_flat`
    ForwardFlat,
    /// `forward_3x3`
    Forward3x3,
    /// `forward_3x3_v4`
    Forward3x3V4,
    /// `forward_3x3_v8`
    Forward3x3V8,
    /// `forward_3x3_v8_oihw`
    Forward3x3V8Oihw,
    /// `backward_data`
    BackwardData,
    /// `backward_data_flat`
    BackwardDataFlat,
    /// `backward_data_3x3`
    BackwardData3x3,
    /// `backward_data_3x3_v4`
    BackwardData3x3V4,
    /// `backward_data_3x3_v8`
    BackwardData3x3V8,
    /// `backward_weight`
    BackwardWeight,
    /// `backward_weight_1x1`
    BackwardWeight1x1,
    /// `backward_weight_3x3`
    BackwardWeight3x3,
    /// `backward_weight_3x3_v4`
    BackwardWeight3x3V4,
    /// `reduce_splits`
    ReduceSplits,
    /// `bias_grad`
    BiasGrad,
}

impl ConvEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [ConvEntry] = &[
        ConvEntry::Weights3x3T,
        ConvEntry::Forward,
        ConvEntry::ForwardFlat,
        ConvEntry::Forward3x3,
        ConvEntry::Forward3x3V4,
        ConvEntry::Forward3x3V8,
        ConvEntry::Forward3x3V8Oihw,
        ConvEntry::BackwardData,
        ConvEntry::BackwardDataFlat,
        ConvEntry::BackwardData3x3,
        ConvEntry::BackwardData3x3V4,
        ConvEntry::BackwardData3x3V8,
        ConvEntry::BackwardWeight,
        ConvEntry::BackwardWeight1x1,
        ConvEntry::BackwardWeight3x3,
        ConvEntry::BackwardWeight3x3V4,
        ConvEntry::ReduceSplits,
        ConvEntry::BiasGrad,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::CONV;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            ConvEntry::Weights3x3T => "weights_3x3_t",
            ConvEntry::Forward => "forward",
            ConvEntry::ForwardFlat => "forward_flat",
            ConvEntry::Forward3x3 => "forward_3x3",
            ConvEntry::Forward3x3V4 => "forward_3x3_v4",
            ConvEntry::Forward3x3V8 => "forward_3x3_v8",
            ConvEntry::Forward3x3V8Oihw => "forward_3x3_v8_oihw",
            ConvEntry::BackwardData => "backward_data",
            ConvEntry::BackwardDataFlat => "backward_data_flat",
            ConvEntry::BackwardData3x3 => "backward_data_3x3",
            ConvEntry::BackwardData3x3V4 => "backward_data_3x3_v4",
            ConvEntry::BackwardData3x3V8 => "backward_data_3x3_v8",
            ConvEntry::BackwardWeight => "backward_weight",
            ConvEntry::BackwardWeight1x1 => "backward_weight_1x1",
            ConvEntry::BackwardWeight3x3 => "backward_weight_3x3",
            ConvEntry::BackwardWeight3x3V4 => "backward_weight_3x3_v4",
            ConvEntry::ReduceSplits => "reduce_splits",
            ConvEntry::BiasGrad => "bias_grad",
        }
    }
}

impl From<ConvEntry> for EntryPoint {
    fn from(e: ConvEntry) -> Self {
        EntryPoint::Conv(e)
    }
}

/// The entry points of `shaders/batchnorm.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BatchnormEntry {
    /// `fwd_fused_v`
    FwdFusedV,
    /// `fwd_partial_v`
    FwdPartialV,
    /// `fwd_apply_v`
    FwdApplyV,
    /// `normalize_v`
    NormalizeV,
    /// `fwd_fused_s`
    FwdFusedS,
    /// `fwd_partial_s`
    FwdPartialS,
    /// `fwd_apply_s`
    FwdApplyS,
    /// `normalize_s`
    NormalizeS,
    /// `bwd_fused_v`
    BwdFusedV,
    /// `bwd_partial_v`
    BwdPartialV,
    /// `bwd_apply_v`
    BwdApplyV,
    /// `bwd_fused_s`
    BwdFusedS,
    /// `bwd_partial_s`
    BwdPartialS,
    /// `bwd_apply_s`
    BwdApplyS,
}

impl BatchnormEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [BatchnormEntry] = &[
        BatchnormEntry::FwdFusedV,
        BatchnormEntry::FwdPartialV,
        BatchnormEntry::FwdApplyV,
        BatchnormEntry::NormalizeV,
        BatchnormEntry::FwdFusedS,
        BatchnormEntry::FwdPartialS,
        BatchnormEntry::FwdApplyS,
        BatchnormEntry::NormalizeS,
        BatchnormEntry::BwdFusedV,
        BatchnormEntry::BwdPartialV,
        BatchnormEntry::BwdApplyV,
        BatchnormEntry::BwdFusedS,
        BatchnormEntry::BwdPartialS,
        BatchnormEntry::BwdApplyS,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::BATCHNORM;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            BatchnormEntry::FwdFusedV => "fwd_fused_v",
            BatchnormEntry::FwdPartialV => "fwd_partial_v",
            BatchnormEntry::FwdApplyV => "fwd_apply_v",
            BatchnormEntry::NormalizeV => "normalize_v",
            BatchnormEntry::FwdFusedS => "fwd_fused_s",
            BatchnormEntry::FwdPartialS => "fwd_partial_s",
            BatchnormEntry::FwdApplyS => "fwd_apply_s",
            BatchnormEntry::NormalizeS => "normalize_s",
            BatchnormEntry::BwdFusedV => "bwd_fused_v",
            BatchnormEntry::BwdPartialV => "bwd_partial_v",
            BatchnormEntry::BwdApplyV => "bwd_apply_v",
            BatchnormEntry::BwdFusedS => "bwd_fused_s",
            BatchnormEntry::BwdPartialS => "bwd_partial_s",
            BatchnormEntry::BwdApplyS => "bwd_apply_s",
        }
    }
}

impl From<BatchnormEntry> for EntryPoint {
    fn from(e: BatchnormEntry) -> Self {
        EntryPoint::Batchnorm(e)
    }
}

/// The entry points of `shaders/elementwise.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElementwiseEntry {
    /// `relu_forward`
    ReluForward,
    /// `relu_backward`
    ReluBackward,
    /// `scale_add`
    ScaleAdd,
}

impl ElementwiseEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [ElementwiseEntry] = &[
        ElementwiseEntry::ReluForward,
        ElementwiseEntry::ReluBackward,
        ElementwiseEntry::ScaleAdd,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::ELEMENTWISE;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            ElementwiseEntry::ReluForward => "relu_forward",
            ElementwiseEntry::ReluBackward => "relu_backward",
            ElementwiseEntry::ScaleAdd => "scale_add",
        }
    }
}

impl From<ElementwiseEntry> for EntryPoint {
    fn from(e: ElementwiseEntry) -> Self {
        EntryPoint::Elementwise(e)
    }
}

/// The entry points of `shaders/gemm.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GemmEntry {
    /// `gemm_gg`
    GemmGg,
    /// `gemm_gg_c4`
    GemmGgC4,
    /// `gemm_gn`
    GemmGn,
    /// `gemm_gn_c4`
    GemmGnC4,
    /// `gemm_gk`
    GemmGk,
    /// `gemm_gk_c4`
    GemmGkC4,
    /// `gemm_kg`
    GemmKg,
    /// `gemm_kg_c4`
    GemmKgC4,
    /// `gemm_kn`
    GemmKn,
    /// `gemm_kn_c4`
    GemmKnC4,
    /// `gemm_kk`
    GemmKk,
    /// `gemm_kk_c4`
    GemmKkC4,
    /// `gemm_mg`
    GemmMg,
    /// `gemm_mg_c4`
    GemmMgC4,
    /// `gemm_mn`
    GemmMn,
    /// `gemm_mn_c4`
    GemmMnC4,
    /// `gemm_mk`
    GemmMk,
    /// `gemm_mk_c4`
    GemmMkC4,
    /// `gemm_reduce`
    GemmReduce,
    /// `add_bias`
    AddBias,
    /// `col_sum`
    ColSum,
}

impl GemmEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [GemmEntry] = &[
        GemmEntry::GemmGg,
        GemmEntry::GemmGgC4,
        GemmEntry::GemmGn,
        GemmEntry::GemmGnC4,
        GemmEntry::GemmGk,
        GemmEntry::GemmGkC4,
        GemmEntry::GemmKg,
        GemmEntry::GemmKgC4,
        GemmEntry::GemmKn,
        GemmEntry::GemmKnC4,
        GemmEntry::GemmKk,
        GemmEntry::GemmKkC4,
        GemmEntry::GemmMg,
        GemmEntry::GemmMgC4,
        GemmEntry::GemmMn,
        GemmEntry::GemmMnC4,
        GemmEntry::GemmMk,
        GemmEntry::GemmMkC4,
        GemmEntry::GemmReduce,
        GemmEntry::AddBias,
        GemmEntry::ColSum,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::GEMM;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            GemmEntry::GemmGg => "gemm_gg",
            GemmEntry::GemmGgC4 => "gemm_gg_c4",
            GemmEntry::GemmGn => "gemm_gn",
            GemmEntry::GemmGnC4 => "gemm_gn_c4",
            GemmEntry::GemmGk => "gemm_gk",
            GemmEntry::GemmGkC4 => "gemm_gk_c4",
            GemmEntry::GemmKg => "gemm_kg",
            GemmEntry::GemmKgC4 => "gemm_kg_c4",
            GemmEntry::GemmKn => "gemm_kn",
            GemmEntry::GemmKnC4 => "gemm_kn_c4",
            GemmEntry::GemmKk => "gemm_kk",
            GemmEntry::GemmKkC4 => "gemm_kk_c4",
            GemmEntry::GemmMg => "gemm_mg",
            GemmEntry::GemmMgC4 => "gemm_mg_c4",
            GemmEntry::GemmMn => "gemm_mn",
            GemmEntry::GemmMnC4 => "gemm_mn_c4",
            GemmEntry::GemmMk => "gemm_mk",
            GemmEntry::GemmMkC4 => "gemm_mk_c4",
            GemmEntry::GemmReduce => "gemm_reduce",
            GemmEntry::AddBias => "add_bias",
            GemmEntry::ColSum => "col_sum",
        }
    }
}

impl From<GemmEntry> for EntryPoint {
    fn from(e: GemmEntry) -> Self {
        EntryPoint::Gemm(e)
    }
}

/// The entry points of `shaders/fill.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FillEntry {
    /// `fill_zero`
    FillZero,
}

impl FillEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [FillEntry] = &[
        FillEntry::FillZero,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::FILL;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            FillEntry::FillZero => "fill_zero",
        }
    }
}

impl From<FillEntry> for EntryPoint {
    fn from(e: FillEntry) -> Self {
        EntryPoint::Fill(e)
    }
}

/// The entry points of `shaders/pool.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoolEntry {
    /// `avg_forward_2x2`
    AvgForward2x2,
    /// `avg_backward_2x2`
    AvgBackward2x2,
    /// `max_backward_3s2`
    MaxBackward3s2,
    /// `max_forward`
    MaxForward,
    /// `max_backward`
    MaxBackward,
    /// `avg_forward`
    AvgForward,
    /// `avg_backward`
    AvgBackward,
    /// `global_avg_forward`
    GlobalAvgForward,
    /// `global_avg_forward4`
    GlobalAvgForward4,
    /// `global_avg_backward`
    GlobalAvgBackward,
    /// `copy_channels`
    CopyChannels,
    /// `copy_channels4`
    CopyChannels4,
}

impl PoolEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [PoolEntry] = &[
        PoolEntry::AvgForward2x2,
        PoolEntry::AvgBackward2x2,
        PoolEntry::MaxBackward3s2,
        PoolEntry::MaxForward,
        PoolEntry::MaxBackward,
        PoolEntry::AvgForward,
        PoolEntry::AvgBackward,
        PoolEntry::GlobalAvgForward,
        PoolEntry::GlobalAvgForward4,
        PoolEntry::GlobalAvgBackward,
        PoolEntry::CopyChannels,
        PoolEntry::CopyChannels4,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::POOL;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            PoolEntry::AvgForward2x2 => "avg_forward_2x2",
            PoolEntry::AvgBackward2x2 => "avg_backward_2x2",
            PoolEntry::MaxBackward3s2 => "max_backward_3s2",
            PoolEntry::MaxForward => "max_forward",
            PoolEntry::MaxBackward => "max_backward",
            PoolEntry::AvgForward => "avg_forward",
            PoolEntry::AvgBackward => "avg_backward",
            PoolEntry::GlobalAvgForward => "global_avg_forward",
            PoolEntry::GlobalAvgForward4 => "global_avg_forward4",
            PoolEntry::GlobalAvgBackward => "global_avg_backward",
            PoolEntry::CopyChannels => "copy_channels",
            PoolEntry::CopyChannels4 => "copy_channels4",
        }
    }
}

impl From<PoolEntry> for EntryPoint {
    fn from(e: PoolEntry) -> Self {
        EntryPoint::Pool(e)
    }
}

/// The entry points of `shaders/loss.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LossEntry {
    /// `softmax_norm`
    SoftmaxNorm,
    /// `softmax_rows`
    SoftmaxRows,
    /// `sigmoid_rows`
    SigmoidRows,
    /// `loss_finish`
    LossFinish,
}

impl LossEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [LossEntry] = &[
        LossEntry::SoftmaxNorm,
        LossEntry::SoftmaxRows,
        LossEntry::SigmoidRows,
        LossEntry::LossFinish,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::LOSS;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            LossEntry::SoftmaxNorm => "softmax_norm",
            LossEntry::SoftmaxRows => "softmax_rows",
            LossEntry::SigmoidRows => "sigmoid_rows",
            LossEntry::LossFinish => "loss_finish",
        }
    }
}

impl From<LossEntry> for EntryPoint {
    fn from(e: LossEntry) -> Self {
        EntryPoint::Loss(e)
    }
}

/// The entry points of `shaders/adam.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdamEntry {
    /// `adam_step`
    AdamStep,
}

impl AdamEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [AdamEntry] = &[
        AdamEntry::AdamStep,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::ADAM;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            AdamEntry::AdamStep => "adam_step",
        }
    }
}

impl From<AdamEntry> for EntryPoint {
    fn from(e: AdamEntry) -> Self {
        EntryPoint::Adam(e)
    }
}

/// The entry points of `shaders/embed.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EmbedEntry {
    /// `l2n_forward`
    L2nForward,
    /// `l2n_backward`
    L2nBackward,
    /// `distill_rows`
    DistillRows,
    /// `pair_dist`
    PairDist,
    /// `hard_mine`
    HardMine,
    /// `hard_coef`
    HardCoef,
    /// `all_count`
    AllCount,
    /// `hard_finish`
    HardFinish,
    /// `all_finish`
    AllFinish,
    /// `all_coef`
    AllCoef,
    /// `pair_mat`
    PairMat,
    /// `loss_sum`
    LossSum,
}

impl EmbedEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [EmbedEntry] = &[
        EmbedEntry::L2nForward,
        EmbedEntry::L2nBackward,
        EmbedEntry::DistillRows,
        EmbedEntry::PairDist,
        EmbedEntry::HardMine,
        EmbedEntry::HardCoef,
        EmbedEntry::AllCount,
        EmbedEntry::HardFinish,
        EmbedEntry::AllFinish,
        EmbedEntry::AllCoef,
        EmbedEntry::PairMat,
        EmbedEntry::LossSum,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::EMBED;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            EmbedEntry::L2nForward => "l2n_forward",
            EmbedEntry::L2nBackward => "l2n_backward",
            EmbedEntry::DistillRows => "distill_rows",
            EmbedEntry::PairDist => "pair_dist",
            EmbedEntry::HardMine => "hard_mine",
            EmbedEntry::HardCoef => "hard_coef",
            EmbedEntry::AllCount => "all_count",
            EmbedEntry::HardFinish => "hard_finish",
            EmbedEntry::AllFinish => "all_finish",
            EmbedEntry::AllCoef => "all_coef",
            EmbedEntry::PairMat => "pair_mat",
            EmbedEntry::LossSum => "loss_sum",
        }
    }
}

impl From<EmbedEntry> for EntryPoint {
    fn from(e: EmbedEntry) -> Self {
        EntryPoint::Embed(e)
    }
}

/// The entry points of `shaders/knn.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KnnEntry {
    /// `sq_norms`
    SqNorms,
    /// `knn_keys`
    KnnKeys,
    /// `knn_select`
    KnnSelect,
    /// `knn_sort`
    KnnSort,
}

impl KnnEntry {
    /// Every entry point of the shader, in source order.
    pub const ALL: &'static [KnnEntry] = &[
        KnnEntry::SqNorms,
        KnnEntry::KnnKeys,
        KnnEntry::KnnSelect,
        KnnEntry::KnnSort,
    ];

    /// The shader that holds these entry points.
    pub const SHADER: Shader = shaders::KNN;

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            KnnEntry::SqNorms => "sq_norms",
            KnnEntry::KnnKeys => "knn_keys",
            KnnEntry::KnnSelect => "knn_select",
            KnnEntry::KnnSort => "knn_sort",
        }
    }
}

impl From<KnnEntry> for EntryPoint {
    fn from(e: KnnEntry) -> Self {
        EntryPoint::Knn(e)
    }
}

/// An entry point of one of the kernel shaders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryPoint {
    Conv(ConvEntry),
    Batchnorm(BatchnormEntry),
    Elementwise(ElementwiseEntry),
    Gemm(GemmEntry),
    Fill(FillEntry),
    Pool(PoolEntry),
    Loss(LossEntry),
    Adam(AdamEntry),
    Embed(EmbedEntry),
    Knn(KnnEntry),
}

impl EntryPoint {
    /// Every entry point of every kernel shader, shader by shader in the order of [`shaders::ALL`].
    pub const ALL: &'static [EntryPoint] = &[
        EntryPoint::Conv(ConvEntry::Weights3x3T),
        EntryPoint::Conv(ConvEntry::Forward),
        EntryPoint::Conv(ConvEntry::ForwardFlat),
        EntryPoint::Conv(ConvEntry::Forward3x3),
        EntryPoint::Conv(ConvEntry::Forward3x3V4),
        EntryPoint::Conv(ConvEntry::Forward3x3V8),
        EntryPoint::Conv(ConvEntry::Forward3x3V8Oihw),
        EntryPoint::Conv(ConvEntry::BackwardData),
        EntryPoint::Conv(ConvEntry::BackwardDataFlat),
        EntryPoint::Conv(ConvEntry::BackwardData3x3),
        EntryPoint::Conv(ConvEntry::BackwardData3x3V4),
        EntryPoint::Conv(ConvEntry::BackwardData3x3V8),
        EntryPoint::Conv(ConvEntry::BackwardWeight),
        EntryPoint::Conv(ConvEntry::BackwardWeight1x1),
        EntryPoint::Conv(ConvEntry::BackwardWeight3x3),
        EntryPoint::Conv(ConvEntry::BackwardWeight3x3V4),
        EntryPoint::Conv(ConvEntry::ReduceSplits),
        EntryPoint::Conv(ConvEntry::BiasGrad),
        EntryPoint::Batchnorm(BatchnormEntry::FwdFusedV),
        EntryPoint::Batchnorm(BatchnormEntry::FwdPartialV),
        EntryPoint::Batchnorm(BatchnormEntry::FwdApplyV),
        EntryPoint::Batchnorm(BatchnormEntry::NormalizeV),
        EntryPoint::Batchnorm(BatchnormEntry::FwdFusedS),
        EntryPoint::Batchnorm(BatchnormEntry::FwdPartialS),
        EntryPoint::Batchnorm(BatchnormEntry::FwdApplyS),
        EntryPoint::Batchnorm(BatchnormEntry::NormalizeS),
        EntryPoint::Batchnorm(BatchnormEntry::BwdFusedV),
        EntryPoint::Batchnorm(BatchnormEntry::BwdPartialV),
        EntryPoint::Batchnorm(BatchnormEntry::BwdApplyV),
        EntryPoint::Batchnorm(BatchnormEntry::BwdFusedS),
        EntryPoint::Batchnorm(BatchnormEntry::BwdPartialS),
        EntryPoint::Batchnorm(BatchnormEntry::BwdApplyS),
        EntryPoint::Elementwise(ElementwiseEntry::ReluForward),
        EntryPoint::Elementwise(ElementwiseEntry::ReluBackward),
        EntryPoint::Elementwise(ElementwiseEntry::ScaleAdd),
        EntryPoint::Gemm(GemmEntry::GemmGg),
        EntryPoint::Gemm(GemmEntry::GemmGgC4),
        EntryPoint::Gemm(GemmEntry::GemmGn),
        EntryPoint::Gemm(GemmEntry::GemmGnC4),
        EntryPoint::Gemm(GemmEntry::GemmGk),
        EntryPoint::Gemm(GemmEntry::GemmGkC4),
        EntryPoint::Gemm(GemmEntry::GemmKg),
        EntryPoint::Gemm(GemmEntry::GemmKgC4),
        EntryPoint::Gemm(GemmEntry::GemmKn),
        EntryPoint::Gemm(GemmEntry::GemmKnC4),
        EntryPoint::Gemm(GemmEntry::GemmKk),
        EntryPoint::Gemm(GemmEntry::GemmKkC4),
        EntryPoint::Gemm(GemmEntry::GemmMg),
        EntryPoint::Gemm(GemmEntry::GemmMgC4),
        EntryPoint::Gemm(GemmEntry::GemmMn),
        EntryPoint::Gemm(GemmEntry::GemmMnC4),
        EntryPoint::Gemm(GemmEntry::GemmMk),
        EntryPoint::Gemm(GemmEntry::GemmMkC4),
        EntryPoint::Gemm(GemmEntry::GemmReduce),
        EntryPoint::Gemm(GemmEntry::AddBias),
        EntryPoint::Gemm(GemmEntry::ColSum),
        EntryPoint::Fill(FillEntry::FillZero),
        EntryPoint::Pool(PoolEntry::AvgForward2x2),
        EntryPoint::Pool(PoolEntry::AvgBackward2x2),
        EntryPoint::Pool(PoolEntry::MaxBackward3s2),
        EntryPoint::Pool(PoolEntry::MaxForward),
        EntryPoint::Pool(PoolEntry::MaxBackward),
        EntryPoint::Pool(PoolEntry::AvgForward),
        EntryPoint::Pool(PoolEntry::AvgBackward),
        EntryPoint::Pool(PoolEntry::GlobalAvgForward),
        EntryPoint::Pool(PoolEntry::GlobalAvgForward4),
        EntryPoint::Pool(PoolEntry::GlobalAvgBackward),
        EntryPoint::Pool(PoolEntry::CopyChannels),
        EntryPoint::Pool(PoolEntry::CopyChannels4),
        EntryPoint::Loss(LossEntry::SoftmaxNorm),
        EntryPoint::Loss(LossEntry::SoftmaxRows),
        EntryPoint::Loss(LossEntry::SigmoidRows),
        EntryPoint::Loss(LossEntry::LossFinish),
        EntryPoint::Adam(AdamEntry::AdamStep),
        EntryPoint::Embed(EmbedEntry::L2nForward),
        EntryPoint::Embed(EmbedEntry::L2nBackward),
        EntryPoint::Embed(EmbedEntry::DistillRows),
        EntryPoint::Embed(EmbedEntry::PairDist),
        EntryPoint::Embed(EmbedEntry::HardMine),
        EntryPoint::Embed(EmbedEntry::HardCoef),
        EntryPoint::Embed(EmbedEntry::AllCount),
        EntryPoint::Embed(EmbedEntry::HardFinish),
        EntryPoint::Embed(EmbedEntry::AllFinish),
        EntryPoint::Embed(EmbedEntry::AllCoef),
        EntryPoint::Embed(EmbedEntry::PairMat),
        EntryPoint::Embed(EmbedEntry::LossSum),
        EntryPoint::Knn(KnnEntry::SqNorms),
        EntryPoint::Knn(KnnEntry::KnnKeys),
        EntryPoint::Knn(KnnEntry::KnnSelect),
        EntryPoint::Knn(KnnEntry::KnnSort),
    ];

    /// The entry point's name in WGSL.
    pub const fn name(self) -> &'static str {
        match self {
            EntryPoint::Conv(e) => e.name(),
            EntryPoint::Batchnorm(e) => e.name(),
            EntryPoint::Elementwise(e) => e.name(),
            EntryPoint::Gemm(e) => e.name(),
            EntryPoint::Fill(e) => e.name(),
            EntryPoint::Pool(e) => e.name(),
            EntryPoint::Loss(e) => e.name(),
            EntryPoint::Adam(e) => e.name(),
            EntryPoint::Embed(e) => e.name(),
            EntryPoint::Knn(e) => e.name(),
        }
    }

    /// The shader that holds the entry point.
    pub const fn shader(self) -> Shader {
        match self {
            EntryPoint::Conv(_) => ConvEntry::SHADER,
            EntryPoint::Batchnorm(_) => BatchnormEntry::SHADER,
            EntryPoint::Elementwise(_) => ElementwiseEntry::SHADER,
            EntryPoint::Gemm(_) => GemmEntry::SHADER,
            EntryPoint::Fill(_) => FillEntry::SHADER,
            EntryPoint::Pool(_) => PoolEntry::SHADER,
            EntryPoint::Loss(_) => LossEntry::SHADER,
            EntryPoint::Adam(_) => AdamEntry::SHADER,
            EntryPoint::Embed(_) => EmbedEntry::SHADER,
            EntryPoint::Knn(_) => KnnEntry::SHADER,
        }
    }
}
