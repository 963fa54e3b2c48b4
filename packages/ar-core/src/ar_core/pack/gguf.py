"""GGUF (llama.cpp) block codecs: integer fields <-> block bytes, and exact float32 dequantization.

One small class per ggml type. Each codec turns a dict of numpy *fields* (one entry per block) into uint8 block rows
of `type_size` bytes and back, and dequantizes fields with the same float32 arithmetic ggml uses, so
`dequantize(bytes)` here equals `gguf.quants.dequantize` exactly. Field names:

  d, dmin, m      float16 [n]            block scale, k-quant min scale, q4_1/q5_1 float minimum
  q               uint8 [n, block]       unsigned element codes (sym types: value = q - 2^(bits-1))
  sc, mn          [n, sub-blocks]        k-quant sub-block scale / min integers (q3_k/q6_k sc is signed)

The legacy types (q4_0, q4_1, q5_0, q5_1, q8_0) also have `reference_fields(x)`: ggml's own round-to-nearest
quantizer, reproduced bit for bit (float32 reciprocal-multiply and ggml's rounding rules).
"""

from __future__ import annotations

import numpy as np

from ..errors import SchemeError, field_error

QK_K = 256


def _f16(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16).reshape(-1)


def _f16_at(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The fp16 field stored at byte `offset` of every block row, as a 1-D float16 array."""
    return blocks[:, offset:offset + 2].copy().view(np.float16).reshape(-1)


def _bytes(x: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.uint8).reshape(n, -1)


def _nibbles(q: np.ndarray, parts: int) -> np.ndarray:
    """Pack 4-bit codes: [n, parts*2*L] -> [n, parts*L]; within each part element j goes low, j+L high."""
    n = q.shape[0]
    q = q.reshape(n, parts, 2, -1)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, -1)


def _unnibbles(b: np.ndarray, parts: int) -> np.ndarray:
    n = b.shape[0]
    b = b.reshape(n, parts, 1, -1) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    return (b & 0x0F).reshape(n, -1)


def _crumbs(q: np.ndarray, parts: int) -> np.ndarray:
    """Pack 2-bit codes: [n, parts*4*L] -> [n, parts*L]; element s*L+j of a part sits at bit 2s of byte j."""
    n = q.shape[0]
    q = q.reshape(n, parts, 4, -1).astype(np.uint8)
    out = np.zeros((n, parts, q.shape[-1]), np.uint8)
    for s in range(4):
        out |= (q[:, :, s] & 3) << (2 * s)
    return out.reshape(n, -1)


def _uncrumbs(b: np.ndarray, parts: int) -> np.ndarray:
    n = b.shape[0]
    b = b.reshape(n, parts, 1, -1) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
    return (b & 3).reshape(n, -1)


def _bitplane(bits: np.ndarray, width: int) -> np.ndarray:
    """Pack one bit per element: element i goes to bit i // width of byte i % width."""
    n = bits.shape[0]
    bits = bits.reshape(n, -1, width).astype(np.uint8)
    out = np.zeros((n, width), np.uint8)
    for k in range(bits.shape[1]):
        out |= (bits[:, k] & 1) << k
    return out


def _unbitplane(b: np.ndarray, count: int) -> np.ndarray:
    n, width = b.shape
    return ((b.reshape(n, 1, width) >> np.arange(count // width, dtype=np.uint8).reshape(1, -1, 1)) & 1).reshape(n, -1)


class Codec:
    """Block layout of one ggml type. Subclasses set name, block_size, type_size, bits and implement the methods."""

    name = ""
    block_size = 32
    type_size = 0
    bits = 0

    @classmethod
    def pack(cls, f: dict[str, np.ndarray]) -> np.ndarray:
        """Fields -> uint8 [n, type_size]."""
        raise NotImplementedError

    @classmethod
    def unpack(cls, blocks: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 [n, type_size] -> fields."""
        raise NotImplementedError

    @classmethod
    def dequantize_fields(cls, f: dict[str, np.ndarray]) -> np.ndarray:
        """Fields -> float32 [n, block_size], with ggml's float32 arithmetic."""
        raise NotImplementedError

    @classmethod
    def dequantize(cls, blocks: np.ndarray) -> np.ndarray:
        """uint8 [n, type_size] -> float32 [n, block_size]."""
        return cls.dequantize_fields(cls.unpack(blocks))


class _Legacy(Codec):
    """q4_0/q5_0/q8_0 (sym, fields d, q) and q4_1/q5_1 (asym, fields d, m, q): one fp16 scale per 32 values."""

    asym = False

    @classmethod
    def dequantize_fields(cls, f):
        d = f["d"].astype(np.float32).reshape(-1, 1)
        if cls.asym:
            return d * f["q"].astype(np.float32) + f["m"].astype(np.float32).reshape(-1, 1)
        return d * (f["q"].astype(np.int16) - (1 << (cls.bits - 1))).astype(np.float32)

    @classmethod
    def reference_fields(cls, x: np.ndarray) -> dict[str, np.ndarray]:
        """ggml's RTN quantizer for float32 blocks [n, 32] (bit-exact with ggml / gguf.quants)."""
        x = np.asarray(x, np.float32)
        top = (1 << cls.bits) - 1
        if cls.asym:
            lo, hi = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
            d = (hi - lo) / np.float32(top)
            inv = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, np.float32(1), d))
            q = np.trunc((x - lo) * inv + np.float32(0.5)).astype(np.uint8).clip(0, top)
            return {"d": _f16(d), "m": _f16(lo), "q": q}
        half = 1 << (cls.bits - 1)
        if cls.bits == 8:
            d = np.abs(x).max(-1, keepdims=True) / np.float32(127)
            inv = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, np.float32(1), d))
            y = x * inv
            a = np.abs(y)
            r = np.floor(a) + np.floor(np.float32(2) * (a - np.floor(a)))  # round half away from zero
            return {"d": _f16(d), "q": (np.sign(y) * r + half).astype(np.uint8)}
        idx = np.abs(x).argmax(-1)[:, None]
        d = np.take_along_axis(x, idx, -1) / np.float32(-half)
        inv = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, np.float32(1), d))
        q = np.trunc(x * inv + np.float32(half + 0.5)).astype(np.uint8).clip(0, top)
        return {"d": _f16(d), "q": q}


class Q4_0(_Legacy):
    """q4_0: [d fp16][16 bytes of nibbles: value j low, j+16 high]."""

    name, type_size, bits = "q4_0", 18, 4

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        return np.concatenate([_bytes(_f16(f["d"]), n), _nibbles(f["q"].astype(np.uint8), 1)], axis=1)

    @classmethod
    def unpack(cls, blocks):
        return {"d": _f16_at(blocks, 0), "q": _unnibbles(blocks[:, 2:], 1)}


class Q4_1(_Legacy):
    """q4_1: [d fp16][m fp16][16 bytes of nibbles]."""

    name, type_size, bits, asym = "q4_1", 20, 4, True

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        return np.concatenate([_bytes(_f16(f["d"]), n), _bytes(_f16(f["m"]), n),
                               _nibbles(f["q"].astype(np.uint8), 1)], axis=1)

    @classmethod
    def unpack(cls, blocks):
        return {"d": _f16_at(blocks, 0),
                "m": _f16_at(blocks, 2), "q": _unnibbles(blocks[:, 4:], 1)}


def _highbits32(q: np.ndarray) -> np.ndarray:
    return np.packbits((q >> 4) & 1, axis=-1, bitorder="little").reshape(q.shape[0], 4)


def _unpack5(qh: np.ndarray, qs: np.ndarray) -> np.ndarray:
    high = np.unpackbits(qh, axis=-1, bitorder="little")
    return _unnibbles(qs, 1) | (high << 4)


class Q5_0(_Legacy):
    """q5_0: [d fp16][qh 4 bytes][16 bytes of low nibbles]."""

    name, type_size, bits = "q5_0", 22, 5

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        q = f["q"].astype(np.uint8)
        return np.concatenate([_bytes(_f16(f["d"]), n), _highbits32(q), _nibbles(q & 0x0F, 1)], axis=1)

    @classmethod
    def unpack(cls, blocks):
        return {"d": _f16_at(blocks, 0), "q": _unpack5(blocks[:, 2:6], blocks[:, 6:])}


class Q5_1(_Legacy):
    """q5_1: [d fp16][m fp16][qh 4 bytes][16 bytes of low nibbles]."""

    name, type_size, bits, asym = "q5_1", 24, 5, True

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        q = f["q"].astype(np.uint8)
        return np.concatenate([_bytes(_f16(f["d"]), n), _bytes(_f16(f["m"]), n), _highbits32(q),
                               _nibbles(q & 0x0F, 1)], axis=1)

    @classmethod
    def unpack(cls, blocks):
        return {"d": _f16_at(blocks, 0),
                "m": _f16_at(blocks, 2), "q": _unpack5(blocks[:, 4:8], blocks[:, 8:])}


class Q8_0(_Legacy):
    """q8_0: [d fp16][32 int8 values] (code q stores value + 128)."""

    name, type_size, bits = "q8_0", 34, 8

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        vals = (f["q"].astype(np.int16) - 128).astype(np.int8).view(np.uint8)
        return np.concatenate([_bytes(_f16(f["d"]), n), vals], axis=1)

    @classmethod
    def unpack(cls, blocks):
        q = (blocks[:, 2:].copy().view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        return {"d": _f16_at(blocks, 0), "q": q}

    @classmethod
    def dequantize_fields(cls, f):
        x = (f["q"].astype(np.int16) - 128).astype(np.float32)
        return x * f["d"].astype(np.float32).reshape(-1, 1)


class KQuant(Codec):
    """Super-blocks of 256 values with one fp16 scale (and min) and integer sub-block scales (llama.cpp k-quants)."""

    block_size = QK_K


def _pack_scale_min_k4(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """8 six-bit scales + 8 six-bit mins -> 12 bytes (llama.cpp's q4_k/q5_k layout)."""
    sc, mn = sc.astype(np.uint8), mn.astype(np.uint8)
    out = np.empty((sc.shape[0], 12), np.uint8)
    out[:, 0:4] = (sc[:, :4] & 0x3F) | ((sc[:, 4:] >> 4) << 6)
    out[:, 4:8] = (mn[:, :4] & 0x3F) | ((mn[:, 4:] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    return out


def _unpack_scale_min_k4(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sc = np.concatenate([b[:, 0:4] & 0x3F, (b[:, 8:12] & 0x0F) | ((b[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([b[:, 4:8] & 0x3F, (b[:, 8:12] >> 4) | ((b[:, 4:8] >> 6) << 4)], axis=1)
    return sc, mn


def _dequant_asym_k(f, sub: int) -> np.ndarray:
    n = f["q"].shape[0]
    dl = (f["d"].astype(np.float32).reshape(-1, 1) * f["sc"].astype(np.float32)).reshape(n, -1, 1)
    ml = (f["dmin"].astype(np.float32).reshape(-1, 1) * f["mn"].astype(np.float32)).reshape(n, -1, 1)
    return (dl * f["q"].reshape(n, -1, sub).astype(np.float32) - ml).reshape(n, QK_K)


def _dequant_sym_k(f, sub: int, offset: int) -> np.ndarray:
    n = f["q"].shape[0]
    dl = (f["d"].astype(np.float32).reshape(-1, 1) * f["sc"].astype(np.float32)).reshape(n, -1, 1)
    q = (f["q"].astype(np.int16) - offset).reshape(n, -1, sub).astype(np.float32)
    return (dl * q).reshape(n, QK_K)


class Q2_K(KQuant):
    """q2_k: [16 bytes: scale low nibble, min high nibble][64 bytes of 2-bit codes][d fp16][dmin fp16]."""

    name, type_size, bits = "q2_k", 84, 2

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        scales = (f["sc"].astype(np.uint8) & 0x0F) | (f["mn"].astype(np.uint8) << 4)
        return np.concatenate([scales, _crumbs(f["q"], 2), _bytes(_f16(f["d"]), n), _bytes(_f16(f["dmin"]), n)], 1)

    @classmethod
    def unpack(cls, blocks):
        s = blocks[:, :16]
        return {"sc": s & 0x0F, "mn": s >> 4, "q": _uncrumbs(blocks[:, 16:80], 2),
                "d": _f16_at(blocks, 80),
                "dmin": _f16_at(blocks, 82)}

    @classmethod
    def dequantize_fields(cls, f):
        return _dequant_asym_k(f, 16)


class Q3_K(KQuant):
    """q3_k: [hmask 32][qs 64: low 2 bits][12 bytes: 16 six-bit scales +32][d fp16]; value = q - 4, q in 0..7."""

    name, type_size, bits = "q3_k", 110, 3

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        q = f["q"].astype(np.uint8)
        s = (f["sc"].astype(np.int16) + 32).astype(np.uint8)
        scales = np.empty((n, 12), np.uint8)
        scales[:, :8] = (s[:, :8] & 0x0F) | ((s[:, 8:] & 0x0F) << 4)
        hi = (s >> 4).reshape(n, 4, 4)  # index k*4 + j -> bits 2k of byte 8 + j
        scales[:, 8:] = hi[:, 0] | (hi[:, 1] << 2) | (hi[:, 2] << 4) | (hi[:, 3] << 6)
        return np.concatenate([_bitplane(q >> 2, 32), _crumbs(q & 3, 2), scales, _bytes(_f16(f["d"]), n)], 1)

    @classmethod
    def unpack(cls, blocks):
        n = blocks.shape[0]
        low = _unnibbles(blocks[:, 96:104], 1)
        hi = ((blocks[:, 104:108].reshape(n, 1, 4) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 4, 1)) & 3)
        sc = (low | (hi.reshape(n, 16) << 4)).astype(np.int16) - 32
        q = _uncrumbs(blocks[:, 32:96], 2) | (_unbitplane(blocks[:, :32], QK_K) << 2)
        return {"q": q, "sc": sc.astype(np.int8), "d": _f16_at(blocks, 108)}

    @classmethod
    def dequantize_fields(cls, f):
        return _dequant_sym_k(f, 16, 4)


class Q4_K(KQuant):
    """q4_k: [d fp16][dmin fp16][12 bytes scales/mins][128 bytes: 32-value sub-block pairs low/high nibble]."""

    name, type_size, bits = "q4_k", 144, 4

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        return np.concatenate([_bytes(_f16(f["d"]), n), _bytes(_f16(f["dmin"]), n),
                               _pack_scale_min_k4(f["sc"], f["mn"]), _nibbles(f["q"].astype(np.uint8), 4)], 1)

    @classmethod
    def unpack(cls, blocks):
        sc, mn = _unpack_scale_min_k4(blocks[:, 4:16])
        return {"d": _f16_at(blocks, 0),
                "dmin": _f16_at(blocks, 2), "sc": sc, "mn": mn,
                "q": _unnibbles(blocks[:, 16:], 4)}

    @classmethod
    def dequantize_fields(cls, f):
        return _dequant_asym_k(f, 32)


class Q5_K(KQuant):
    """q5_k: [d][dmin][12 bytes scales/mins][qh 32: bit k = high bit of sub-block k][128 bytes low nibbles]."""

    name, type_size, bits = "q5_k", 176, 5

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        q = f["q"].astype(np.uint8)
        return np.concatenate([_bytes(_f16(f["d"]), n), _bytes(_f16(f["dmin"]), n),
                               _pack_scale_min_k4(f["sc"], f["mn"]), _bitplane(q >> 4, 32),
                               _nibbles(q & 0x0F, 4)], 1)

    @classmethod
    def unpack(cls, blocks):
        sc, mn = _unpack_scale_min_k4(blocks[:, 4:16])
        q = _unnibbles(blocks[:, 48:], 4) | (_unbitplane(blocks[:, 16:48], QK_K) << 4)
        return {"d": _f16_at(blocks, 0),
                "dmin": _f16_at(blocks, 2), "sc": sc, "mn": mn, "q": q}

    @classmethod
    def dequantize_fields(cls, f):
        return _dequant_asym_k(f, 32)


class Q6_K(KQuant):
    """q6_k: [ql 128: low nibbles][qh 64: 2-bit highs][16 int8 scales][d fp16]; value = q - 32, q in 0..63."""

    name, type_size, bits = "q6_k", 210, 6

    @classmethod
    def pack(cls, f):
        n = f["q"].shape[0]
        q = f["q"].astype(np.uint8)
        ql = _nibbles(q & 0x0F, 2)
        return np.concatenate([ql, _crumbs(q >> 4, 2), f["sc"].astype(np.int8).view(np.uint8).reshape(n, 16),
                               _bytes(_f16(f["d"]), n)], 1)

    @classmethod
    def unpack(cls, blocks):
        q = _unnibbles(blocks[:, :128], 2) | (_uncrumbs(blocks[:, 128:192], 2) << 4)
        return {"q": q, "sc": blocks[:, 192:208].copy().view(np.int8),
                "d": _f16_at(blocks, 208)}

    @classmethod
    def dequantize_fields(cls, f):
        return _dequant_sym_k(f, 16, 32)


CODECS: dict[str, type[Codec]] = {c.name: c for c in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)}


def get_codec(name: str) -> type[Codec]:
    """The codec of a ggml type name (q4_0 ... q6_k)."""
    if name not in CODECS:
        raise field_error(SchemeError, "gguf type", name, f"one of {sorted(CODECS)}")
    return CODECS[name]


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even; NaNs stay quiet NaNs."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, ((u >> 16) | 0x0040).astype(np.uint16), rounded)


def from_bf16_bits(b: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32."""
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


def rows_to_float(name: str, data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Dequantize raw GGUF bytes (any ggml or float type name) to float32 of logical `shape`."""
    if name == "f32":
        return np.asarray(data).view(np.float32).reshape(shape)
    if name == "f16":
        return np.asarray(data).view(np.float16).astype(np.float32).reshape(shape)
    if name == "bf16":
        return from_bf16_bits(np.asarray(data).view(np.uint16)).reshape(shape)
    codec = get_codec(name)
    return codec.dequantize(np.asarray(data, np.uint8).reshape(-1, codec.type_size)).reshape(shape)


def qtensor_fields(qt, name: str) -> dict[str, np.ndarray]:
    """Block fields of a QuantizedTensor for ggml type `name` (see ar_core.qtensor / ar_core.quant.gguf)."""
    codec = get_codec(name)
    out, cols = qt.shape[0], qt.shape[-1]
    if cols % codec.block_size:
        raise field_error(SchemeError, "in_features", cols, f"a multiple of {codec.block_size} for {name}")
    n = out * cols // codec.block_size
    half = 1 << (codec.bits - 1)
    q = qt.codes.detach().cpu().numpy().astype(np.uint8).reshape(n, codec.block_size)
    scale = qt.scale.detach().float().cpu().numpy().reshape(n, -1)
    if not issubclass(codec, KQuant):
        fields = {"d": _f16(scale), "q": q}
        if codec.asym:
            fields["m"] = _f16(qt.zero.detach().float().cpu().numpy())
        elif not np.all(qt.zero.detach().cpu().numpy() == half):
            raise field_error(SchemeError, "zero", "non-centred", f"{name} needs zero == {half} (symmetric)")
        return fields
    ex = qt.extras
    fields = {"q": q, "d": _f16(ex["d"].detach().cpu().numpy()),
              "sc": ex["sub_scale"].detach().cpu().numpy().reshape(n, -1)}
    if "dmin" in ex:
        fields["dmin"] = _f16(ex["dmin"].detach().cpu().numpy())
        fields["mn"] = ex["sub_min"].detach().cpu().numpy().reshape(n, -1)
    return fields


def pack_qtensor(qt, name: str) -> np.ndarray:
    """QuantizedTensor -> GGUF block bytes uint8 [out, bytes_per_row] of ggml type `name`."""
    return get_codec(name).pack(qtensor_fields(qt, name)).reshape(qt.shape[0], -1)
