//! The closed operator table. Every operator the compiler reasons about is one variant whose
//! name is its ONNX `op_type` in the default domain; anything else (other domains, operators
//! added to ONNX later) is kept losslessly as `Op::Other`. Import, export and the text form all
//! go through `Op::from_onnx` / `Op::op_type` / `Op::domain`, so adding an operator is one line
//! here plus, where it matters, its inference rule (`ir/infer/`, family file + registry line)
//! and its gradient (`autodiff/`, family file + registry line).

macro_rules! op_table {
    ($($v:ident),* $(,)?) => {
        /// An operator: a known default-domain op, or an opaque one carried through unchanged.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Op {
            $($v,)*
            /// Any operator not in the table (kept as written, domain and type).
            Other { domain: String, op_type: String },
        }

        impl Op {
            /// Maps an ONNX (domain, op_type) pair to an operator.
            pub fn from_onnx(domain: &str, op_type: &str) -> Op {
                if domain.is_empty() || domain == "ai.onnx" {
                    match op_type {
                        $(stringify!($v) => return Op::$v,)*
                        _ => {}
                    }
                }
                Op::Other { domain: domain.to_string(), op_type: op_type.to_string() }
            }

            /// The ONNX op_type.
            pub fn op_type(&self) -> &str {
                match self {
                    $(Op::$v => stringify!($v),)*
                    Op::Other { op_type, .. } => op_type,
                }
            }
        }
    };
}

op_table! {
    // elementwise arithmetic and math
    Add, Sub, Mul, Div, Neg, Pow, Sqrt, Exp, Log, Reciprocal, Abs, Min, Max, Clip, Sign, Floor,
    Ceil, Round, Mod, Sum, Mean, Erf, Sin, Cos, Tan, Tanh, Sigmoid, HardSigmoid, Relu, LeakyRelu,
    Elu, Selu, Celu, Gelu, Softplus, Softsign, PRelu, HardSwish, Mish, ThresholdedRelu,
    // comparisons and logic (never differentiable)
    Equal, Less, LessOrEqual, Greater, GreaterOrEqual, Not, And, Or, Xor, Where, IsNaN, IsInf,
    BitShift, BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot,
    // linear algebra and neural network layers
    MatMul, Gemm, Conv, ConvTranspose, BatchNormalization, LayerNormalization,
    InstanceNormalization, GroupNormalization, LpNormalization, MaxPool, AveragePool,
    GlobalAveragePool, GlobalMaxPool, Dropout, Softmax, LogSoftmax, Hardmax, Einsum,
    // losses
    SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss,
    // reductions
    ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceLogSumExp,
    ReduceSumSquare, ReduceLogSum, ArgMax, ArgMin, CumSum, TopK,
    // shape and data movement
    Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand, Tile, Pad, Concat, Split, Slice,
    Gather, GatherElements, GatherND, ScatterElements, ScatterND, Scatter, Identity, Cast,
    CastLike, Shape, Size, ConstantOfShape, Constant, Range, OneHot, NonZero, Trilu, Resize,
    Upsample, DepthToSpace, SpaceToDepth, SplitToSequence, SequenceAt, SequenceConstruct,
    SequenceLength, SequenceInsert, SequenceEmpty, ConcatFromSequence,
    // randomness
    RandomUniform, RandomUniformLike, RandomNormal, RandomNormalLike, Bernoulli, Multinomial,
    // control flow
    If, Loop, Scan,
}

impl Op {
    /// The ONNX domain ("" for the default domain).
    pub fn domain(&self) -> &str {
        match self {
            Op::Other { domain, .. } => domain,
            _ => "",
        }
    }

    /// Operators whose outputs are fresh random draws (never merged, cloned per use).
    pub fn is_random(&self) -> bool {
        matches!(
            self,
            Op::RandomUniform
                | Op::RandomUniformLike
                | Op::RandomNormal
                | Op::RandomNormalLike
                | Op::Bernoulli
                | Op::Multinomial
        )
    }

    /// Comparisons and logic ops: broadcasting, with a bool result.
    pub fn is_predicate(&self) -> bool {
        matches!(
            self,
            Op::Equal
                | Op::Less
                | Op::LessOrEqual
                | Op::Greater
                | Op::GreaterOrEqual
                | Op::And
                | Op::Or
                | Op::Xor
        )
    }

    /// Operators whose outputs never carry a gradient (shape, index and comparison results).
    pub fn is_non_differentiable(&self) -> bool {
        matches!(
            self,
            Op::Shape
                | Op::Size
                | Op::ConstantOfShape
                | Op::Constant
                | Op::Range
                | Op::NonZero
                | Op::ArgMax
                | Op::ArgMin
                | Op::Not
                | Op::IsNaN
                | Op::IsInf
                | Op::Sign
                | Op::Floor
                | Op::Ceil
                | Op::Round
                | Op::BitShift
                | Op::BitwiseAnd
                | Op::BitwiseOr
                | Op::BitwiseXor
                | Op::BitwiseNot
                | Op::Hardmax
                | Op::OneHot
                | Op::SequenceLength
        ) || self.is_predicate()
            || self.is_random()
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Other { domain, op_type } if !domain.is_empty() => write!(f, "{domain}::{op_type}"),
            _ => f.write_str(self.op_type()),
        }
    }
}
