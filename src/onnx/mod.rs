//! ONNX export: the GPT of docs/model.md written as one ONNX graph of opset 17 operators, from
//! its weights as plain arrays (the trainer hands them over; this module knows no burn).
//!
//! Input `input_ids` int64 [batch, seq] (seq ≤ block_size), output `logits` f32
//! [batch, seq, vocab]. Operators above opset 17 (Gelu, Mish) are written as their formulas.

pub mod proto;

use prost::Message;
use proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};

/// The default domain's operator set the graph is written for: the first with a native
/// LayerNormalization.
pub const OPSET: i64 = 17;
/// The IR version of opset 17 (ONNX 1.12).
const IR_VERSION: i64 = 8;

/// A tensor of f32 values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// `x · weight + bias`, the weight [in, out].
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Array,
    pub bias: Option<Array>,
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub gamma: Array,
    pub beta: Option<Array>,
    pub epsilon: f32,
}

/// The gate g(b) of a gated unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gate {
    Sigmoid,
    Relu,
    /// Exact (erf) GELU.
    Gelu,
    Mish,
    Silu,
    /// b · σ(β b).
    Swish {
        beta: f32,
    },
}

/// The gated half of a feed-forward unit: `value · (α g(b) + 1 − α)`.
#[derive(Debug, Clone)]
pub struct Gated {
    pub b: Linear,
    pub gate: Gate,
    /// The value is tanh(a) (GTU) rather than a.
    pub tanh_value: bool,
    /// α at the exported step: fixed, learned, or scheduled.
    pub alpha: f32,
}

/// `o(unit(a(x), b(x)))`; without a gate, `o(gelu(a(x)))`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub a: Linear,
    pub gated: Option<Gated>,
    pub o: Linear,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub ln1: LayerNorm,
    pub qkv: Linear,
    pub proj: Linear,
    pub heads: usize,
    pub ln2: LayerNorm,
    pub ffn: FeedForward,
}

/// A whole GPT's weights.
#[derive(Debug, Clone)]
pub struct Gpt {
    /// [vocab, dim].
    pub tokens: Array,
    /// [block_size, dim].
    pub positions: Array,
    pub blocks: Vec<Block>,
    pub ln_f: LayerNorm,
    /// [dim, vocab]; `None` when tied to the token embedding.
    pub head: Option<Array>,
}

impl Gpt {
    fn dims(&self) -> (usize, usize, usize) {
        let vocab = self.tokens.shape[0];
        let dim = self.tokens.shape[1];
        (vocab, dim, self.positions.shape[0])
    }
}

/// The model file: the graph, the opset, and `metadata` (key, value) pairs.
pub fn model(gpt: &Gpt, metadata: &[(String, String)], doc: &str) -> Vec<u8> {
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("xp".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc.into()),
        graph: Some(graph(gpt)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect(),
    };
    model.encode_to_vec()
}

fn graph(gpt: &Gpt) -> GraphProto {
    let (vocab, dim, block_size) = gpt.dims();
    let mut g = Graph::default();
    let ids = "input_ids";
    let tokens = g.weight("tokens", &gpt.tokens);
    let x = g.node("Gather", &[&tokens, ids], vec![]);
    // Positions 0..T, T from the input's shape.
    let shape = g.node("Shape", &[ids], vec![]);
    let (one, two, zero) = (
        g.ints("one", &[1]),
        g.ints("two", &[2]),
        g.ints("zero", &[0]),
    );
    let t = g.node("Slice", &[&shape, &one, &two, &zero], vec![]);
    let t_scalar = g.node("Squeeze", &[&t, &zero], vec![]);
    let (start, step) = (g.scalar_int("start", 0), g.scalar_int("step", 1));
    let range = g.node("Range", &[&start, &t_scalar, &step], vec![]);
    let positions = g.weight("positions", &gpt.positions);
    let pe = g.node("Gather", &[&positions, &range], vec![]);
    let mut x = g.node("Add", &[&x, &pe], vec![]);
    // Where a position may attend: the lower triangle of the block, cut to T × T.
    let allowed: Vec<bool> = (0..block_size * block_size)
        .map(|i| i % block_size <= i / block_size)
        .collect();
    let allowed = g.bools("causal", &[block_size, block_size], &allowed);
    let tt = g.node("Concat", &[&t, &t], vec![attr_int("axis", 0)]);
    let axes = g.ints("axes01", &[0, 1]);
    let zeros = g.ints("zeros2", &[0, 0]);
    let mask = g.node("Slice", &[&allowed, &zeros, &tt, &axes], vec![]);
    let minus_inf = g.scalar("minus_inf", f32::NEG_INFINITY);
    for (i, block) in gpt.blocks.iter().enumerate() {
        let p = format!("blocks.{i}");
        let h = g.layer_norm(&format!("{p}.ln1"), &x, &block.ln1);
        let y = g.attention(&p, &h, block, dim, &mask, &minus_inf);
        x = g.node("Add", &[&x, &y], vec![]);
        let h = g.layer_norm(&format!("{p}.ln2"), &x, &block.ln2);
        let y = g.feed_forward(&format!("{p}.ffn"), &h, &block.ffn);
        x = g.node("Add", &[&x, &y], vec![]);
    }
    let x = g.layer_norm("ln_f", &x, &gpt.ln_f);
    let head = match &gpt.head {
        Some(head) => g.weight("head", head),
        None => g.node("Transpose", &[&tokens], vec![attr_ints("perm", &[1, 0])]),
    };
    g.named_node("MatMul", &[&x, &head], "logits", vec![]);
    GraphProto {
        node: g.nodes,
        name: Some("xp_gpt".into()),
        initializer: g.initializers,
        input: vec![value_info(
            ids,
            proto::INT64,
            &[Dim::Param("batch"), Dim::Param("seq")],
        )],
        output: vec![value_info(
            "logits",
            proto::FLOAT,
            &[Dim::Param("batch"), Dim::Param("seq"), Dim::Value(vocab)],
        )],
    }
}

/// Nodes and initializers being written; each node's output gets a fresh name.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    count: usize,
}

impl Graph {
    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.count += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.count);
        self.named_node(op, inputs, &output, attributes)
    }

    fn named_node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(format!("{op}_{}", self.nodes.len())),
            op_type: Some(op.into()),
            attribute: attributes,
        });
        output.to_string()
    }

    fn tensor(&mut self, name: &str, data_type: i32, dims: &[usize], raw: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type),
            name: Some(name.into()),
            raw_data: Some(raw),
        });
        name.to_string()
    }

    fn weight(&mut self, name: &str, a: &Array) -> String {
        let raw = a.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, proto::FLOAT, &a.shape, raw)
    }

    fn scalar(&mut self, name: &str, v: f32) -> String {
        self.tensor(name, proto::FLOAT, &[], v.to_le_bytes().to_vec())
    }

    fn scalar_int(&mut self, name: &str, v: i64) -> String {
        self.tensor(name, proto::INT64, &[], v.to_le_bytes().to_vec())
    }

    fn ints(&mut self, name: &str, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, proto::INT64, &[values.len()], raw)
    }

    fn bools(&mut self, name: &str, dims: &[usize], values: &[bool]) -> String {
        let raw = values.iter().map(|&b| b as u8).collect();
        self.tensor(name, proto::BOOL, dims, raw)
    }

    fn linear(&mut self, name: &str, x: &str, l: &Linear) -> String {
        let w = self.weight(&format!("{name}.weight"), &l.weight);
        let y = self.node("MatMul", &[x, &w], vec![]);
        match &l.bias {
            Some(b) => {
                let b = self.weight(&format!("{name}.bias"), b);
                self.node("Add", &[&y, &b], vec![])
            }
            None => y,
        }
    }

    fn layer_norm(&mut self, name: &str, x: &str, ln: &LayerNorm) -> String {
        let gamma = self.weight(&format!("{name}.gamma"), &ln.gamma);
        let mut inputs = vec![x.to_string(), gamma];
        if let Some(beta) = &ln.beta {
            inputs.push(self.weight(&format!("{name}.beta"), beta));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node(
            "LayerNormalization",
            &inputs,
            vec![attr_int("axis", -1), attr_float("epsilon", ln.epsilon)],
        )
    }

    /// Causal self-attention of `h` [B, T, C]: the explicit form, scores masked to −∞
    /// above the diagonal and a softmax over the keys.
    fn attention(
        &mut self,
        p: &str,
        h: &str,
        block: &Block,
        dim: usize,
        mask: &str,
        minus_inf: &str,
    ) -> String {
        let heads = block.heads;
        let hd = dim / heads;
        let qkv = self.linear(&format!("{p}.attn.qkv"), h, &block.qkv);
        let sizes = self.ints(&format!("{p}.split"), &[dim as i64; 3]);
        self.count += 1;
        let names: Vec<String> = ["q", "k", "v"]
            .iter()
            .map(|n| format!("{p}.{n}_{}", self.count))
            .collect();
        self.nodes.push(NodeProto {
            input: vec![qkv, sizes],
            output: names.clone(),
            name: Some(format!("Split_{}", self.nodes.len())),
            op_type: Some("Split".into()),
            attribute: vec![attr_int("axis", 2)],
        });
        let shape = self.ints(&format!("{p}.heads"), &[0, 0, heads as i64, hd as i64]);
        let mut split = |name: &str, perm: &[i64]| {
            let r = self.node("Reshape", &[name, &shape], vec![]);
            self.node("Transpose", &[&r], vec![attr_ints("perm", perm)])
        };
        let q = split(&names[0], &[0, 2, 1, 3]);
        let k_t = split(&names[1], &[0, 2, 3, 1]);
        let v = split(&names[2], &[0, 2, 1, 3]);
        let scores = self.node("MatMul", &[&q, &k_t], vec![]);
        let scale = self.scalar(&format!("{p}.scale"), 1.0 / (hd as f32).sqrt());
        let scores = self.node("Mul", &[&scores, &scale], vec![]);
        let scores = self.node("Where", &[mask, &scores, minus_inf], vec![]);
        let weights = self.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let y = self.node("MatMul", &[&weights, &v], vec![]);
        let y = self.node("Transpose", &[&y], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let merged = self.ints(&format!("{p}.merge"), &[0, 0, dim as i64]);
        let y = self.node("Reshape", &[&y, &merged], vec![]);
        self.linear(&format!("{p}.attn.proj"), &y, &block.proj)
    }

    fn feed_forward(&mut self, p: &str, h: &str, ffn: &FeedForward) -> String {
        let a = self.linear(&format!("{p}.a"), h, &ffn.a);
        let Some(gated) = &ffn.gated else {
            let y = self.gelu(p, &a);
            return self.linear(&format!("{p}.o"), &y, &ffn.o);
        };
        let b = self.linear(&format!("{p}.b"), h, &gated.b);
        let gate = match gated.gate {
            Gate::Sigmoid => self.node("Sigmoid", &[&b], vec![]),
            Gate::Relu => self.node("Relu", &[&b], vec![]),
            Gate::Gelu => self.gelu(p, &b),
            Gate::Mish => {
                let soft = self.node("Softplus", &[&b], vec![]);
                let t = self.node("Tanh", &[&soft], vec![]);
                self.node("Mul", &[&b, &t], vec![])
            }
            Gate::Silu => {
                let s = self.node("Sigmoid", &[&b], vec![]);
                self.node("Mul", &[&b, &s], vec![])
            }
            Gate::Swish { beta } => {
                let beta = self.scalar(&format!("{p}.beta"), beta);
                let scaled = self.node("Mul", &[&b, &beta], vec![]);
                let s = self.node("Sigmoid", &[&scaled], vec![]);
                self.node("Mul", &[&b, &s], vec![])
            }
        };
        let value = if gated.tanh_value {
            self.node("Tanh", &[&a], vec![])
        } else {
            a
        };
        // α·g − α + 1, in the order the trainer computes it.
        let alpha = self.scalar(&format!("{p}.alpha"), gated.alpha);
        let one = self.scalar(&format!("{p}.one"), 1.0);
        let scaled = self.node("Mul", &[&gate, &alpha], vec![]);
        let shifted = self.node("Sub", &[&scaled, &alpha], vec![]);
        let mixed = self.node("Add", &[&shifted, &one], vec![]);
        let y = self.node("Mul", &[&value, &mixed], vec![]);
        self.linear(&format!("{p}.o"), &y, &ffn.o)
    }

    /// Exact GELU, 0.5 x (1 + erf(x / √2)): the Gelu operator needs opset 20.
    fn gelu(&mut self, p: &str, x: &str) -> String {
        self.count += 1;
        let n = self.count;
        let inv_sqrt2 = self.scalar(
            &format!("{p}.gelu{n}.inv_sqrt2"),
            std::f32::consts::FRAC_1_SQRT_2,
        );
        let half = self.scalar(&format!("{p}.gelu{n}.half"), 0.5);
        let one = self.scalar(&format!("{p}.gelu{n}.one"), 1.0);
        let scaled = self.node("Mul", &[x, &inv_sqrt2], vec![]);
        let erf = self.node("Erf", &[&scaled], vec![]);
        let plus = self.node("Add", &[&erf, &one], vec![]);
        let xs = self.node("Mul", &[x, &plus], vec![]);
        self.node("Mul", &[&xs, &half], vec![])
    }
}

enum Dim<'a> {
    Value(usize),
    Param(&'a str),
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim<'_>]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Dim::Value(v) => DimensionValue::DimValue(*v as i64),
                                Dim::Param(p) => DimensionValue::DimParam(p.to_string()),
                            }),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(proto::ATTRIBUTE_INT),
        ..AttributeProto::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(proto::ATTRIBUTE_INTS),
        ..AttributeProto::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(proto::ATTRIBUTE_FLOAT),
        ..AttributeProto::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(shape: &[usize], seed: f32) -> Array {
        let n = shape.iter().product();
        Array {
            shape: shape.to_vec(),
            values: (0..n)
                .map(|i| ((i as f32 + seed) * 0.37).sin() * 0.1)
                .collect(),
        }
    }

    #[test]
    fn the_model_reads_back_with_its_inputs_outputs_and_metadata() {
        let (v, d) = (5, 4);
        let ln = LayerNorm {
            gamma: array(&[d], 1.0),
            beta: None,
            epsilon: 1e-5,
        };
        let linear = |i: usize, o: usize| Linear {
            weight: array(&[i, o], 2.0),
            bias: None,
        };
        let gpt = Gpt {
            tokens: array(&[v, d], 0.0),
            positions: array(&[3, d], 3.0),
            blocks: vec![Block {
                ln1: ln.clone(),
                qkv: linear(d, 3 * d),
                proj: linear(d, d),
                heads: 2,
                ln2: ln.clone(),
                ffn: FeedForward {
                    a: linear(d, 8),
                    gated: Some(Gated {
                        b: linear(d, 8),
                        gate: Gate::Swish { beta: 1.0 },
                        tanh_value: false,
                        alpha: 0.5,
                    }),
                    o: linear(8, d),
                },
            }],
            ln_f: ln,
            head: None,
        };
        let bytes = model(&gpt, &[("xp.run".into(), "run-1".into())], "a test");
        let back = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.opset_import[0].version, Some(OPSET));
        assert_eq!(back.metadata_props[0].value.as_deref(), Some("run-1"));
        let graph = back.graph.unwrap();
        assert_eq!(graph.input[0].name.as_deref(), Some("input_ids"));
        assert_eq!(graph.output[0].name.as_deref(), Some("logits"));
        let last = graph.node.last().unwrap();
        assert_eq!(last.output, ["logits"]);
        // Every node reads names that exist before it: the graph is in topological order.
        let mut known: Vec<String> = graph
            .initializer
            .iter()
            .filter_map(|t| t.name.clone())
            .collect();
        known.push("input_ids".into());
        for n in &graph.node {
            for i in &n.input {
                assert!(
                    known.contains(i),
                    "{:?} reads {i} before it exists",
                    n.op_type
                );
            }
            known.extend(n.output.iter().cloned());
        }
        let causal = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some("causal"))
            .unwrap();
        assert_eq!(
            causal.raw_data.as_deref(),
            Some(&[1, 0, 0, 1, 1, 0, 1, 1, 1][..])
        );
    }
}
