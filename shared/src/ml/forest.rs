//! A booster's trees as one flat array of small nodes, for scoring.
//!
//! forust keeps every node as a 72-byte struct with training statistics
//! (gain, cover, depth) in one `Vec` per tree, and its Average contributions
//! recompute every node's mean leaf weight on each call. Scoring needs only
//! the split, the three children and one value per node, so a loaded booster
//! keeps just that: 32 bytes a node, all trees in one allocation, with the
//! mean leaf weights computed once at conversion.
//!
//! The arithmetic is forust 0.8.0's, in its order, so scores and
//! contributions are bit-for-bit the same: a row's score is
//! `base_score + tree_0 + tree_1 + …` (each leaf weight widened from f32),
//! and its Average contributions start the bias at `base_score`, add each
//! tree's root mean weight to it, and add `mean(child) - mean(node)` to the
//! split feature at every step of the row's path.

use forust_ml::GradientBooster;

/// `feature` of a leaf.
const LEAF: u32 = u32::MAX;
/// Rows scored together, tree by tree: a block of rows stays in cache
/// while each tree is walked for all of them.
const BLOCK: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Values below go left.
    threshold: f64,
    /// A leaf's weight; for a split, the cover-weighted mean of the leaf
    /// weights below it (forust's `distribute_leaf_weights`), the baseline
    /// the Average method measures each step against. A leaf's mean is its
    /// weight, so one value serves both.
    value: f64,
    feature: u32,
    /// Left then right child, indexes into the forest's node array: picked
    /// by the comparison as an index, not a branch, since which way a row
    /// goes is what a branch predictor cannot guess.
    children: [u32; 2],
    missing: u32,
}

impl Node {
    fn same(&self, o: &Node) -> bool {
        self.threshold.to_bits() == o.threshold.to_bits()
            && self.value.to_bits() == o.value.to_bits()
            && (self.feature, self.children, self.missing) == (o.feature, o.children, o.missing)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Forest {
    nodes: Vec<Node>,
    /// Each tree's root in `nodes`.
    roots: Vec<u32>,
    base_score: f64,
    /// forust's missing-value marker; NaN (its default) unless set.
    missing: f64,
    /// One more than the largest feature any split reads.
    width: usize,
}

impl PartialEq for Forest {
    fn eq(&self, o: &Self) -> bool {
        self.roots == o.roots
            && self.base_score.to_bits() == o.base_score.to_bits()
            && self.missing.to_bits() == o.missing.to_bits()
            && self.nodes.len() == o.nodes.len()
            && self.nodes.iter().zip(&o.nodes).all(|(a, b)| a.same(b))
    }
}

impl Forest {
    /// The trees forust predicts with (`prediction_iteration` of them when
    /// set), checked so that walking them always ends at a leaf.
    pub fn from_forust(b: &GradientBooster) -> Result<Forest, String> {
        let used = b
            .prediction_iteration
            .unwrap_or(b.trees.len())
            .min(b.trees.len());
        let trees = &b.trees[..used];
        let total: usize = trees.iter().map(|t| t.nodes.len()).sum();
        if u32::try_from(total).is_err() || total == u32::MAX as usize {
            return Err(format!("booster has {total} nodes, too many"));
        }
        let mut nodes = Vec::with_capacity(total);
        let mut roots = Vec::with_capacity(trees.len());
        let mut width = 0;
        for (t, tree) in trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(format!("booster tree {t} has no nodes"));
            }
            let n = tree.nodes.len();
            // forust numbers children after their parent; requiring it rules
            // out cycles in a damaged artifact, which forust's own recursive
            // walks (the mean leaf weights below) would never leave.
            for (i, node) in tree.nodes.iter().enumerate().filter(|(_, n)| !n.is_leaf) {
                for c in [node.left_child, node.right_child, node.missing_node] {
                    if c <= i || c >= n {
                        return Err(format!("booster tree {t} node {i} has child {c} of {n}"));
                    }
                }
            }
            let means = tree.distribute_leaf_weights();
            let offset = nodes.len();
            roots.push(offset as u32);
            for (i, node) in tree.nodes.iter().enumerate() {
                if node.is_leaf {
                    nodes.push(Node {
                        threshold: 0.0,
                        value: node.weight_value as f64,
                        feature: LEAF,
                        children: [0, 0],
                        missing: 0,
                    });
                    continue;
                }
                let child = |c: usize| (offset + c) as u32;
                let feature = u32::try_from(node.split_feature)
                    .ok()
                    .filter(|f| *f != LEAF)
                    .ok_or_else(|| format!("booster tree {t} node {i}: bad split feature"))?;
                width = width.max(node.split_feature + 1);
                nodes.push(Node {
                    threshold: node.split_value,
                    value: means[i],
                    feature,
                    children: [child(node.left_child), child(node.right_child)],
                    missing: child(node.missing_node),
                });
            }
        }
        Ok(Forest {
            nodes,
            roots,
            base_score: b.base_score,
            missing: b.missing,
            width,
        })
    }

    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Columns a row must have.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Bytes held by the layout.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>() + self.roots.capacity() * 4
    }

    /// The next node from a split, as forust's `get_child_idx`: missing
    /// (NaN, or forust's marker when one is set) to the missing child, below
    /// the threshold left, else right. Feature rows hold no NaN, so the
    /// first test is always predicted right.
    #[inline(always)]
    fn step(&self, node: &Node, v: f64) -> u32 {
        if v.is_nan() || v == self.missing {
            node.missing
        } else {
            node.children[usize::from(v >= node.threshold)]
        }
    }

    #[inline(always)]
    fn leaf(&self, root: u32, row: &[f64]) -> &Node {
        let mut node = &self.nodes[root as usize];
        while node.feature != LEAF {
            let next = self.step(node, row[node.feature as usize]);
            node = &self.nodes[next as usize];
        }
        node
    }

    /// Raw scores of the rows of `x` (row-major, `cols` values a row).
    /// Empty when the rows are narrower than the splits need.
    pub fn predict(&self, x: &[f64], cols: usize) -> Vec<f64> {
        let Some(n) = self.rows(x, cols) else {
            return Vec::new();
        };
        let mut out = vec![self.base_score; n];
        for start in (0..n).step_by(BLOCK) {
            let end = (start + BLOCK).min(n);
            for &root in &self.roots {
                for (i, p) in out[start..end].iter_mut().enumerate() {
                    let row = &x[(start + i) * cols..(start + i + 1) * cols];
                    *p += self.leaf(root, row).value;
                }
            }
        }
        out
    }

    /// Raw scores, and per row `cols + 1` Average contributions (features,
    /// then the bias), in one walk of each path.
    pub fn predict_with_contributions(&self, x: &[f64], cols: usize) -> (Vec<f64>, Vec<f64>) {
        let Some(n) = self.rows(x, cols) else {
            return (Vec::new(), Vec::new());
        };
        let stride = cols + 1;
        let mut scores = vec![self.base_score; n];
        let mut contribs = vec![0.0; n * stride];
        for c in contribs.chunks_exact_mut(stride) {
            c[cols] += self.base_score;
        }
        for start in (0..n).step_by(BLOCK) {
            let end = (start + BLOCK).min(n);
            for &root in &self.roots {
                let top = &self.nodes[root as usize];
                for i in start..end {
                    let row = &x[i * cols..(i + 1) * cols];
                    let c = &mut contribs[i * stride..(i + 1) * stride];
                    c[cols] += top.value;
                    let mut node = top;
                    while node.feature != LEAF {
                        let f = node.feature as usize;
                        let child = &self.nodes[self.step(node, row[f]) as usize];
                        c[f] += child.value - node.value;
                        node = child;
                    }
                    scores[i] += node.value;
                }
            }
        }
        (scores, contribs)
    }

    fn rows(&self, x: &[f64], cols: usize) -> Option<usize> {
        if cols == 0 || cols < self.width || !x.len().is_multiple_of(cols) {
            return None;
        }
        Some(x.len() / cols)
    }
}
