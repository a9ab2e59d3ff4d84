// Exact k nearest neighbours by Euclidean distance (ops/knn.rs). The dot products q·g come from
// the GEMM; these kernels turn them into distances and keep a running top-k per query:
//   sq_norms    ‖x‖² of each row (queries and gallery, by the same code, so that equal rows
//               get equal norms and equal distances);
//   knn_keys    d = sqrt(max(‖q‖² + ‖g‖² − 2 q·g, 1e-12)) of one gallery chunk, in place over
//               the products, as its f32 bits (a key), NONE for items that are not candidates
//               (the query's own item, another group, padding);
//   knn_select  one workgroup per query: the k smallest (key, gallery index) pairs among the
//               old list and the chunk, by radix select, written unordered to the new list;
//   knn_sort    one workgroup per query: bitonic sort of the final list by (key, index).
//
// Why radix select: the keys are the f32 bits of d ≥ 1e-6 > 0, which order as unsigned integers
// exactly as the distances do, and (key, gallery index) is a total order with the tie rule (lower
// index first) built in. Finding the k-th smallest pair digit by digit (8 bits at a time, key
// then index) costs a few passes over the candidates whatever k is (k = 1 and k = G alike), and
// the selected set is exact, with no tolerance anywhere. Index digits are only looked at when
// several candidates share the k-th key. The list is sorted once, at the end: by rank in
// workgroup memory when it fits a workgroup, else bitonically (k log² k per query).
//
// What keeps it cheap (on lavapipe each storage load is a loop over the lanes, so passes over
// the chunk dominate): a bound, a key with at least k pairs at or below it (the old list's
// k-th; in the first chunk the k-th smallest of the threads' minima). Pairs beyond it cannot be
// among the k nearest and are never counted; those within it, usually a few dozen, are copied
// to workgroup memory once, and the digit passes and the gather read only them. So a chunk
// costs two passes over its keys (one in the first chunk without a bound when k > WG: more).

// Lists are `stride` pairs per query (a power of two ≥ k); entries past the selected ones are
// (NONE, NONE), which sort last and read back as "no neighbour".

const NONE: u32 = 0xffffffffu;

override WG: u32 = 64;

// Flat workgroup index: grids wider than 65535 workgroups wrap into y (see gpu::grid).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Flat invocation index of a grid with one invocation per element, wrapped the same way.
fn global_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// ---- sq_norms ----------------------------------------------------------------------------

struct NormParams {
    rows: u32,
    dim: u32,
    x_off: u32,   // element offsets of row 0 in the bound windows of x and of the norms
    out_off: u32,
}

@group(0) @binding(0) var<uniform> np: NormParams;
@group(0) @binding(1) var<storage, read_write> norms_out: array<f32>;
@group(0) @binding(2) var<storage, read> rows_in: array<f32>;

@compute @workgroup_size(WG)
fn sq_norms(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = global_index(gid, nwg);
    if (r >= np.rows) { return; }
    let base = np.x_off + r * np.dim;
    var s = 0.0;
    for (var d = 0u; d < np.dim; d++) {
        let v = rows_in[base + d];
        s += v * v;
    }
    norms_out[np.out_off + r] = s;
}

// ---- knn_keys ----------------------------------------------------------------------------

struct KeyParams {
    queries: u32, // rows of the product (queries of this block)
    cols: u32,    // columns of the product (the chunk, padded to a multiple of 4)
    count: u32,   // real gallery items in the chunk (≤ cols)
    first: u32,   // gallery index of the chunk's first item
    gn_off: u32,  // element offsets of the chunk's first item in the bound windows
    gg_off: u32,
    groups: u32,  // 1: only items of the query's group are candidates
    _pad: u32,
}

@group(0) @binding(0) var<uniform> kp: KeyParams;
// The products [queries, cols] as f32 bits, overwritten by the keys.
@group(0) @binding(1) var<storage, read_write> keys_io: array<u32>;
@group(0) @binding(2) var<storage, read> qnorm: array<f32>;
@group(0) @binding(3) var<storage, read> gnorm: array<f32>;
// Per query: the gallery index it must not return (NONE: none), its group.
@group(0) @binding(4) var<storage, read> qself: array<u32>;
@group(0) @binding(5) var<storage, read> qgroup: array<u32>;
@group(0) @binding(6) var<storage, read> ggroup: array<u32>;

// Workgroup row y is query y, so its norm, own item and group are loaded once per workgroup.
@compute @workgroup_size(WG)
fn knn_keys(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let q = wid.y;
    let j = gid.x;
    if (j >= kp.cols) { return; }
    let qn = qnorm[q];
    let own = qself[q];
    let group = qgroup[q];
    let i = q * kp.cols + j;
    var key = NONE;
    if (j < kp.count && own != kp.first + j && (kp.groups == 0u || group == ggroup[kp.gg_off + j])) {
        let d2 = (qn + gnorm[kp.gn_off + j]) - 2.0 * bitcast<f32>(keys_io[i]);
        key = bitcast<u32>(sqrt(max(d2, 1e-12)));
    }
    keys_io[i] = key;
}

// ---- knn_select --------------------------------------------------------------------------

struct SelectParams {
    k: u32,
    stride: u32, // list entries per query
    cols: u32,   // row length of the chunk's keys
    count: u32,  // real gallery items in the chunk
    first: u32,  // gallery index of the chunk's first item
    prev: u32,   // 1: merge with the old list; 0: the first chunk (no old list)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> sp: SelectParams;
// The new list (key, gallery index), `stride` per query.
@group(0) @binding(1) var<storage, read_write> list_out: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> chunk_keys: array<u32>;
@group(0) @binding(3) var<storage, read> list_in: array<vec2<u32>>;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sh_bound: atomic<u32>;
var<workgroup> sh_min_bound: atomic<u32>;
var<workgroup> sh_min: array<u32, WG>;
// Up to KEEP pairs within the bound (sh_n_kept counts them all, kept or not).
const KEEP: u32 = 256u;
var<workgroup> sh_kept_pairs: array<vec2<u32>, KEEP>;
var<workgroup> sh_n_kept: atomic<u32>;
var<workgroup> sh_kept: u32;
var<workgroup> sh_count: atomic<u32>;
// The k-th smallest pair found so far, digit by digit: key prefix, index prefix, the rank still
// sought among the pairs that share the prefix, and whether the selection is settled.
var<workgroup> sh_key: u32;
var<workgroup> sh_idx: u32;
var<workgroup> sh_rank: u32;
var<workgroup> sh_done: u32;

// The pairs of query q are the old list's `n_old` entries and the chunk's real items; a chunk
// item that is not a candidate is (NONE, NONE), so that all of them are equal and never split
// by an index digit. The two are looped over separately (a branch per item would load both).
fn chunk_pair(j: u32, key: u32) -> vec2<u32> {
    return vec2(key, select(sp.first + j, NONE, key == NONE));
}

// Counts pair e in the histogram of this round's digit if its fixed digits match the prefix.
fn count_pair(e: vec2<u32>, on_key: bool, shift: u32, high: u32, key_pre: u32, idx_pre: u32) {
    var v = e.x;
    var matches = (e.x & high) == (key_pre & high);
    if (!on_key) {
        v = e.y;
        matches = e.x == key_pre && (e.y & high) == (idx_pre & high);
    }
    if (matches) {
        atomicAdd(&hist[(v >> shift) & 255u], 1u);
    }
}

// Copies pair e to workgroup memory if it is within the bound and there is room.
fn keep_pair(e: vec2<u32>, bound: u32) {
    if (e.x <= bound) {
        let at = atomicAdd(&sh_n_kept, 1u);
        if (at < KEEP) {
            sh_kept_pairs[at] = e;
        }
    }
}

// Appends pair e to the new list if it is a candidate at or before the k-th, (tk, ti).
fn gather_pair(e: vec2<u32>, base: u32, tk: u32, ti: u32) {
    if (e.x != NONE && (e.x < tk || (e.x == tk && e.y <= ti))) {
        let at = atomicAdd(&sh_count, 1u);
        list_out[base + at] = e;
    }
}

@compute @workgroup_size(WG)
fn knn_select(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let q = group_index(wid, nwg);
    let n_old = select(0u, sp.k, sp.prev != 0u);
    let base = q * sp.stride;
    let row = q * sp.cols;

    // A bound: a key with at least k pairs at or below it, so that farther pairs, which cannot
    // be among the k nearest, are left out of every count. After the first chunk, the old
    // list's largest key (its k entries are at or below it); in the first, when k ≤ WG, the
    // k-th smallest of the threads' minima over the chunk (k distinct items are at or below it).
    if (lid == 0u) {
        atomicStore(&sh_bound, select(NONE, 0u, sp.prev != 0u));
        atomicStore(&sh_min_bound, NONE);
        atomicStore(&sh_count, 0u);
        atomicStore(&sh_n_kept, 0u);
        sh_key = 0u;
        sh_idx = 0u;
        sh_rank = sp.k;
        // The first chunk with at most k items: all of its candidates are selected.
        sh_done = select(0u, 1u, sp.prev == 0u && sp.count <= sp.k);
        if (sh_done != 0u) {
            sh_key = NONE;
            sh_idx = NONE;
        }
    }
    workgroupBarrier();
    for (var t = lid; t < n_old; t += WG) {
        atomicMax(&sh_bound, list_in[base + t].x);
    }
    if (sp.k <= WG && sp.prev == 0u) {
        var m = NONE;
        for (var j = lid; j < sp.count; j += WG) {
            m = min(m, chunk_keys[row + j]);
        }
        sh_min[lid] = m;
        workgroupBarrier();
        // This thread's rank among the minima (ties by thread), and the k-th's value.
        var rank = 0u;
        for (var i = 0u; i < WG; i++) {
            let o = sh_min[i];
            rank += u32(o < m || (o == m && i < lid));
        }
        if (rank == sp.k - 1u) {
            atomicMin(&sh_min_bound, m);
        }
    }
    workgroupBarrier();
    let bound = min(atomicLoad(&sh_bound), atomicLoad(&sh_min_bound));

    // The pairs within the bound, copied to workgroup memory when they fit: usually a few dozen
    // of the chunk's thousands, and every later pass reads only them.
    for (var t = lid; t < n_old; t += WG) {
        keep_pair(list_in[base + t], bound);
    }
    for (var j = lid; j < sp.count; j += WG) {
        let key = chunk_keys[row + j];
        if (key <= bound) {
            keep_pair(chunk_pair(j, key), bound);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        sh_kept = atomicLoad(&sh_n_kept);
    }
    let kept = workgroupUniformLoad(&sh_kept);
    let compact = kept <= KEEP;

    // Passes 0..3: the key's bytes, high first; 4..7: the index's, among pairs with the key.
    for (var round = 0u; round < 8u; round++) {
        if (workgroupUniformLoad(&sh_done) != 0u) { break; }
        for (var b = lid; b < 256u; b += WG) {
            atomicStore(&hist[b], 0u);
        }
        workgroupBarrier();
        let on_key = round < 4u;
        let shift = 24u - 8u * (round % 4u);
        let high = ~(NONE >> (8u * (round % 4u))); // the bytes already fixed
        let key_pre = sh_key;
        let idx_pre = sh_idx;
        if (compact) {
            for (var t = lid; t < kept; t += WG) {
                count_pair(sh_kept_pairs[t], on_key, shift, high, key_pre, idx_pre);
            }
        } else {
            for (var t = lid; t < n_old; t += WG) {
                let e = list_in[base + t];
                if (e.x <= bound) {
                    count_pair(e, on_key, shift, high, key_pre, idx_pre);
                }
            }
            for (var j = lid; j < sp.count; j += WG) {
                let key = chunk_keys[row + j];
                if (key <= bound) {
                    count_pair(chunk_pair(j, key), on_key, shift, high, key_pre, idx_pre);
                }
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            // The bucket holding the rank-th smallest: fewer than `rank` pairs before it.
            let rank = sh_rank;
            var before = 0u;
            var b = 0u;
            var c = 0u;
            for (; b < 255u; b++) {
                c = atomicLoad(&hist[b]);
                if (before + c >= rank) { break; }
                before += c;
            }
            c = atomicLoad(&hist[b]);
            sh_rank = rank - before;
            let low = select(NONE >> (8u * (round % 4u + 1u)), 0u, round % 4u == 3u);
            if (on_key) {
                sh_key = key_pre | (b << shift);
            } else {
                sh_idx = idx_pre | (b << shift);
            }
            if (c == sh_rank) {
                // Every pair of the bucket is selected: whatever their lower bytes.
                if (on_key) {
                    sh_key = sh_key | low;
                    sh_idx = NONE;
                } else {
                    sh_idx = sh_idx | low;
                }
                sh_done = 1u;
            } else if (round == 3u && sh_key == NONE) {
                // The k-th is not a candidate: every candidate is selected.
                sh_idx = NONE;
                sh_done = 1u;
            } else if (round == 7u) {
                sh_done = 1u;
            }
        }
        workgroupBarrier();
    }

    // Gather the pairs up to (key, idx) = the k-th (never past the bound), then pad with
    // (NONE, NONE).
    let tk = min(workgroupUniformLoad(&sh_key), bound);
    let ti = select(sh_idx, NONE, tk < sh_key);
    if (compact) {
        for (var t = lid; t < kept; t += WG) {
            gather_pair(sh_kept_pairs[t], base, tk, ti);
        }
    } else {
        for (var t = lid; t < n_old; t += WG) {
            gather_pair(list_in[base + t], base, tk, ti);
        }
        for (var j = lid; j < sp.count; j += WG) {
            gather_pair(chunk_pair(j, chunk_keys[row + j]), base, tk, ti);
        }
    }
    workgroupBarrier();
    let n_sel = atomicLoad(&sh_count);
    for (var t = n_sel + lid; t < sp.stride; t += WG) {
        list_out[base + t] = vec2(NONE, NONE);
    }
}

// ---- knn_sort ----------------------------------------------------------------------------

struct SortParams {
    stride: u32, // a power of two
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> op: SortParams;
@group(0) @binding(1) var<storage, read_write> list_sort: array<vec2<u32>>;

var<workgroup> sh_pairs: array<vec2<u32>, WG>;

fn pair_less(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x < b.x || (a.x == b.x && a.y < b.y);
}

@compute @workgroup_size(WG)
fn knn_sort(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let base = group_index(wid, nwg) * op.stride;
    if (op.stride <= WG) {
        // A list that fits the workgroup: each entry goes straight to its rank (equal entries,
        // the (NONE, NONE) padding, ranked by position).
        var e = vec2(NONE, NONE);
        if (lid < op.stride) {
            e = list_sort[base + lid];
        }
        sh_pairs[lid] = e;
        workgroupBarrier();
        if (lid < op.stride) {
            var rank = 0u;
            for (var i = 0u; i < op.stride; i++) {
                let o = sh_pairs[i];
                rank += u32(pair_less(o, e) || (all(o == e) && i < lid));
            }
            list_sort[base + rank] = e;
        }
        return;
    }
    let pairs = op.stride / 2u;
    for (var size = 2u; size <= op.stride; size *= 2u) {
        for (var half = size / 2u; half > 0u; half /= 2u) {
            for (var t = lid; t < pairs; t += WG) {
                let i = (t / half) * 2u * half + t % half;
                let j = i + half;
                let a = list_sort[base + i];
                let b = list_sort[base + j];
                if (pair_less(b, a) == ((i & size) == 0u)) {
                    list_sort[base + i] = b;
                    list_sort[base + j] = a;
                }
            }
            storageBarrier();
        }
    }
}
