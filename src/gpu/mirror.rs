//! The host-side parameter structs (`#[repr(C)]`, uploaded as bytes) against the WGSL structs
//! they mirror, as naga lays those out.
//!
//! Why: each parameter struct is written twice, once in `src/ops` and once in `shaders/`, and
//! nothing else ties the two: a field added, removed or reordered on one side only shifts every
//! later field, and the kernel silently reads the wrong values. The table below names each pair
//! (and which WGSL members lie over each Rust field) explicitly rather than matching by guess, and
//! a test checks that every `var<uniform>` struct of a kernel has its row.

#[cfg(test)]
mod tests {
    use crate::gpu::shaders::{self, Shader};
    use crate::ops;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    /// A Rust field and the WGSL members that lie over its bytes, in order (an array over several
    /// scalars, or none for host-side padding past the end of the WGSL struct).
    struct Field {
        name: &'static str,
        offset: usize,
        size: usize,
        members: &'static [&'static str],
    }

    /// A Rust parameter struct and the WGSL struct of `shader` it mirrors.
    struct Mirror {
        rust: &'static str,
        size: usize,
        shader: Shader,
        wgsl: &'static str,
        fields: Vec<Field>,
    }

    fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
        size_of::<F>()
    }

    macro_rules! mirror {
        ($ty:ty, $shader:expr, $wgsl:literal, { $($field:ident => [$($member:ident)*]),* $(,)? }) => {
            Mirror {
                rust: stringify!($ty),
                size: size_of::<$ty>(),
                shader: $shader,
                wgsl: $wgsl,
                fields: vec![$(Field {
                    name: stringify!($field),
                    offset: offset_of!($ty, $field),
                    size: field_size(|s: &$ty| &s.$field),
                    members: &[$(stringify!($member)),*],
                }),*],
            }
        };
    }

    fn table() -> Vec<Mirror> {
        use shaders::*;
        vec![
            mirror!(ops::adam::Params, ADAM, "AdamParams", {
                offset => [offset], len => [len], _pad => [_pad0 _pad1],
            }),
            mirror!(ops::adam::AdamHyper, ADAM, "AdamHyper", {
                lr => [lr], beta1 => [beta1], beta2 => [beta2], eps => [eps], weight_decay => [weight_decay],
                decoupled => [decoupled], step_size => [step_size], bc2_sqrt => [bc2_sqrt], decay => [decay],
                one_minus_beta1 => [one_minus_beta1], one_minus_beta2 => [one_minus_beta2], step => [step],
            }),
            mirror!(ops::batchnorm::Params, BATCHNORM, "Params", {
                n => [n], c => [c], hw => [hw], m => [m], x_off => [x_off], x_tot => [x_tot], o_off => [o_off],
                o_tot => [o_tot], dy_off => [dy_off], dy_tot => [dy_tot], chunks => [chunks],
                accumulate => [accumulate], step_img => [step_img], step_pix => [step_pix], relu => [relu],
                use_var => [use_var], eps => [eps], momentum => [momentum], batches => [batches], one => [one],
                _pad4 => [_pad4], part_base => [part_base], parts => [parts], save => [save],
                m_total => [m_total], steps => [steps], _pad => [_pad1 _pad2],
            }),
            mirror!(ops::conv::Params, CONV, "Params", {
                n => [n], cin => [cin], h => [h], w => [w], cout => [cout], kh => [kh], kw => [kw],
                stride => [stride], pad => [pad], p => [p], q => [q], accumulate => [accumulate],
                a_off => [a_off], a_tot => [a_tot], b_off => [b_off], b_tot => [b_tot], splits => [splits],
                split_len => [split_len], len => [len], _pad => [_pad],
            }),
            mirror!(ops::elementwise::Params, ELEMENTWISE, "Params", {
                n => [n], accumulate => [accumulate], alpha => [alpha], _pad => [_pad1],
            }),
            mirror!(ops::elementwise::FillParams, FILL, "FillParams", {
                n => [n], c => [c], hw => [hw], c_off => [c_off], c_total => [c_total],
                _pad => [_pad0 _pad1 _pad2],
            }),
            mirror!(ops::embed::Params, EMBED, "Params", {
                batch => [batch], dim => [dim], margin => [margin], accumulate => [accumulate], g => [g],
                d => [d], a => [a], m => [m], work => [work], tail => [tail], count => [count],
                first => [first], divisor => [divisor], _pad => [_pad0 _pad1 _pad2],
            }),
            mirror!(ops::gemm::Mat, GEMM, "Mat", { off => [off], rs => [rs], cs => [cs], bs => [bs] }),
            mirror!(ops::gemm::Params, GEMM, "Params", {
                m => [m], n => [n], k => [k], batch => [batch], a => [a], b => [b], c => [c], alpha => [alpha],
                accumulate => [accumulate], k_chunk => [k_chunk], k_splits => [k_splits], b_chunk => [b_chunk],
                slices_per_out => [slices_per_out], out_count => [out_count], zero => [zero],
            }),
            mirror!(ops::knn::NormParams, KNN, "NormParams", {
                rows => [rows], dim => [dim], x_off => [x_off], out_off => [out_off],
            }),
            mirror!(ops::knn::KeyParams, KNN, "KeyParams", {
                queries => [queries], cols => [cols], count => [count], first => [first], gn_off => [gn_off],
                gg_off => [gg_off], groups => [groups], _pad => [_pad],
            }),
            mirror!(ops::knn::SelectParams, KNN, "SelectParams", {
                k => [k], stride => [stride], cols => [cols], count => [count], first => [first], prev => [prev],
                _pad => [_pad0 _pad1],
            }),
            mirror!(ops::knn::SortParams, KNN, "SortParams", { stride => [stride], _pad => [_pad0 _pad1 _pad2] }),
            mirror!(ops::loss::Params, LOSS, "LossParams", {
                batch => [batch], classes => [classes], gamma => [gamma], scale => [scale],
            }),
            mirror!(ops::pool::Params, POOL, "Params", {
                n => [n], c => [c], h => [h], w => [w], oh => [oh], ow => [ow], k => [k], s => [s], pad => [pad],
                acc => [acc], views => [off1 tot1 off2 tot2 off3 tot3],
            }),
        ]
    }

    /// A shader's module with naga's layout of its types (overrides at their defaults, so that
    /// arrays sized by one have a size).
    fn laid_out(shader: Shader) -> (naga::Module, naga::proc::Layouter) {
        let module = naga::front::wgsl::parse_str(shader.source).unwrap_or_else(|e| panic!("{}: {e}", shader.name));
        let flags = naga::valid::ValidationFlags::all();
        let info = naga::valid::Validator::new(flags, naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", shader.name));
        let (module, _) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &Default::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", shader.name));
        let module = module.into_owned();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap_or_else(|e| panic!("{}: {e:?}", shader.name));
        (module, layouter)
    }

    /// Every problem with one row of the table, as sentences naming the struct and field.
    fn check(m: &Mirror, module: &naga::Module, layouter: &naga::proc::Layouter) -> Vec<String> {
        let at = format!("{} vs {}::{}", m.rust, m.shader.name, m.wgsl);
        let Some((_, ty)) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some(m.wgsl)) else {
            return vec![format!("{at}: no struct {} in the shader", m.wgsl)];
        };
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            return vec![format!("{at}: {} is not a struct", m.wgsl)];
        };
        let by_name: HashMap<&str, &naga::StructMember> =
            members.iter().filter_map(|s| Some((s.name.as_deref()?, s))).collect();
        let mut errors = Vec::new();
        // The rows cover the Rust struct exactly, in order (no field left out of the table).
        let mut next = 0;
        for f in &m.fields {
            if f.offset != next {
                errors
                    .push(format!("{at}: field `{}` is at {} where the listed fields end at {next}", f.name, f.offset));
            }
            next = f.offset + f.size;
        }
        if next != m.size {
            errors.push(format!("{at}: the listed fields end at {next}, the struct at {}", m.size));
        }
        let mut seen = Vec::new();
        for f in &m.fields {
            let mut offset = f.offset;
            for &name in f.members {
                seen.push(name);
                let Some(member) = by_name.get(name) else {
                    errors.push(format!("{at}: no member `{name}` (for field `{}`)", f.name));
                    continue;
                };
                if member.offset as usize != offset {
                    errors.push(format!(
                        "{at}: member `{name}` is at {} in WGSL, field `{}` puts it at {offset}",
                        member.offset, f.name
                    ));
                }
                offset += layouter[member.ty].size as usize;
            }
            if f.members.is_empty() {
                // Host-side padding: only past the end of the WGSL struct.
                if f.offset < *span as usize {
                    errors.push(format!("{at}: field `{}` has no member but lies inside the struct", f.name));
                }
            } else if offset != f.offset + f.size {
                errors.push(format!("{at}: field `{}` is {} bytes, its members {}", f.name, f.size, offset - f.offset));
            }
        }
        for s in members {
            let name = s.name.as_deref().unwrap_or("");
            if !seen.contains(&name) {
                errors.push(format!("{at}: member `{name}` is in no row of the table"));
            }
        }
        // The buffer the host writes is the WGSL struct, padded to a uniform's 16-byte multiple.
        if m.size != (*span as usize).next_multiple_of(16) {
            errors.push(format!("{at}: {} bytes on the host, {span} in WGSL", m.size));
        }
        errors
    }

    #[test]
    fn parameter_structs_match_their_wgsl_layout() {
        let table = table();
        let mut modules = HashMap::new();
        let mut errors = Vec::new();
        for m in &table {
            let (module, layouter) = modules.entry(m.shader.name).or_insert_with(|| laid_out(m.shader));
            errors.extend(check(m, module, layouter));
        }
        assert!(errors.is_empty(), "parameter structs differ from their WGSL mirrors:\n{}", errors.join("\n"));
    }

    /// The table has a row for the struct of every `var<uniform>` of every kernel, so a new
    /// parameter struct cannot be left unchecked.
    #[test]
    fn every_uniform_struct_has_a_row() {
        let table = table();
        let mut missing = Vec::new();
        for shader in shaders::ALL {
            let (module, _) = laid_out(*shader);
            for (_, var) in module.global_variables.iter() {
                if var.space != naga::AddressSpace::Uniform {
                    continue;
                }
                let name = module.types[var.ty].name.clone().unwrap_or_default();
                if !table.iter().any(|m| m.shader.name == shader.name && m.wgsl == name) {
                    missing.push(format!("{}::{name}", shader.name));
                }
            }
        }
        assert!(missing.is_empty(), "uniform structs without a row in gpu::mirror's table: {missing:?}");
    }

    /// The check itself finds a shifted field, a missing member and a size mismatch.
    #[test]
    fn a_mismatch_is_reported() {
        // Only laid out, never built: its fields are read by offset_of! alone.
        #[allow(dead_code)]
        #[repr(C)]
        struct Shifted {
            a: u32,
            b: u32,
            c: [u32; 2],
        }
        let src = "struct P { a: u32, c: u32, b: u32, d: u32, e: u32 }\n@group(0) @binding(0) var<uniform> p: P;\n@compute @workgroup_size(1) fn main() { _ = p.a; }\n";
        let shader = Shader { name: "test.wgsl", source: src };
        let (module, layouter) = laid_out(shader);
        let m = mirror!(Shifted, shader, "P", { a => [a], b => [b], c => [c d] });
        let errors = check(&m, &module, &layouter);
        // b is at 4 on the host, 8 in WGSL; c at 8 / 4; e is in no row; 16 bytes against 20 -> 32.
        assert!(errors.iter().any(|e| e.contains("member `b` is at 8")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("member `c` is at 4")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("member `e` is in no row")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("16 bytes on the host, 20 in WGSL")), "{errors:?}");
        let ok = mirror!(Shifted, shader, "P", { a => [a], b => [c], c => [b d] });
        assert!(check(&ok, &module, &layouter)
            .iter()
            .all(|e| e.contains("member `e`") || e.contains("bytes on the host")));
    }
}
