"""G.711 mu-law and A-law: reference values, the ITU rules for all inputs, round-trip error."""

import numpy as np
import pytest

from pipeline.dsp import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL = np.arange(-32768, 32768, dtype=np.int16)

# G.711 Tables 5 and 6: the digital milliwatt (1 kHz at 0 dBm0), one period at 8 kHz.
DMW_ULAW = bytes([0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E])
DMW_ALAW = bytes([0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4])


def test_known_codes():
    """Spot values of the ITU reference (G.191): zero, extremes, and the one-step values."""
    assert ulaw_decode(bytes([0x00, 0x7F, 0x80, 0xFF, 0x7E, 0xFE])).tolist() == [-32124, 0, 32124, 0, -8, 8]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A, 0xD4, 0x54])).tolist() == [8, -8, 32256, -32256, 24, -24]
    x = np.array([0, -1, 1, 32767, -32768, 8, -8, 100, -100], np.int16)
    # negatives use the one's complement of the magnitude: -100 -> 99 -> level 96, 100 -> 104
    assert ulaw_encode(x).tolist() == [0xFF, 0x7F, 0xFF, 0x80, 0x00, 0xFE, 0x7E, 0xF2, 0x73]
    assert alaw_encode(x).tolist() == [0xD5, 0x55, 0xD5, 0xAA, 0x2A, 0xD5, 0x55, 0xD3, 0x53]


def test_ulaw_decoder_is_the_g711_table():
    """Every mu-law code decodes to the G.711 reconstruction value ((2m + 33) * 2**e - 33) * 4."""
    codes = np.arange(256, dtype=np.uint8)
    inv = 0xFF - codes.astype(np.int32)
    e, m = (inv >> 4) & 7, inv & 15
    magnitude = (((2 * m + 33) << e) - 33) * 4
    expected = np.where(codes & 0x80, magnitude, -magnitude)
    assert np.array_equal(ulaw_decode(codes), expected)


def test_alaw_decoder_is_the_g711_table():
    """Every A-law code decodes to the G.711 value: (2m + 1) * 8 in segment 0, else (2m + 33) * 2**(e-1) * 8."""
    codes = np.arange(256, dtype=np.uint8)
    t = (codes.astype(np.int32) ^ 0x55) & 0x7F
    e, m = t >> 4, t & 15
    magnitude = np.where(e == 0, (2 * m + 1) * 8, ((2 * m + 33) << np.maximum(e - 1, 0)) * 8)
    expected = np.where(codes & 0x80, magnitude, -magnitude)
    assert np.array_equal(alaw_decode(codes), expected)


def _ulaw_step(codes):
    return 8 << (((0xFF - codes.astype(np.int64)) >> 4) & 7)


def _alaw_step(codes):
    e = ((codes.astype(np.int64) ^ 0x55) & 0x7F) >> 4
    return np.where(e == 0, 16, 16 << np.maximum(e - 1, 0))


@pytest.mark.parametrize("encode,decode,step,peak", [(ulaw_encode, ulaw_decode, _ulaw_step, 32124),
                                                     (alaw_encode, alaw_decode, _alaw_step, 32256)])
def test_every_input_lands_in_its_quantisation_interval(encode, decode, step, peak):
    """For all 65536 inputs the code's interval (its level +- half its segment's step) holds
    the input; the encoder is monotonic and keeps the sign; beyond the top it saturates."""
    codes = encode(ALL)
    y = decode(codes).astype(np.int64)
    x = ALL.astype(np.int64)
    assert np.all(np.diff(y) >= 0)
    assert np.all(y[x >= 0] >= 0) and np.all(y[x < 0] <= 0)
    half = step(codes) // 2
    inside = np.abs(x) <= peak + half
    assert np.all(np.abs(x - y)[inside] <= half[inside])
    assert np.all(np.abs(y[~inside]) == peak)


@pytest.mark.parametrize("encode,decode", [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_decode_then_encode_gives_the_code_back(encode, decode):
    """Re-encoding a decoded value returns the same code (mu-law's negative zero 0x7F aside)."""
    codes = np.arange(256, dtype=np.uint8)
    again = encode(decode(codes))
    same = again == codes
    assert np.all(same | (codes == 0x7F))


def test_digital_milliwatt():
    """The G.711 digital milliwatt decodes to a 1 kHz sine and a 1 kHz sine encodes to it."""
    cases = ((DMW_ULAW, ulaw_encode, ulaw_decode, 22579), (DMW_ALAW, alaw_encode, alaw_decode, 22788))
    for dmw, encode, decode, amplitude in cases:
        y = decode(dmw).astype(np.float64)
        phases = np.pi / 8 + np.arange(8) * np.pi / 4
        ideal = -amplitude * np.sin(phases)
        assert np.abs(y - ideal).max() < 0.03 * amplitude
        sine = np.rint(ideal).astype(np.int16)
        assert encode(sine).tobytes() == dmw


@pytest.mark.parametrize("encode,decode,peak", [(ulaw_encode, ulaw_decode, 32124), (alaw_encode, alaw_decode, 32256)])
def test_round_trip_error_bounds(encode, decode, peak):
    """Round-trip error is at most half a quantisation step: 1/32 of the value plus the
    smallest step, and a full-scale sine keeps an SNR above 35 dB."""
    x = ALL.astype(np.int64)
    y = decode(encode(ALL)).astype(np.int64)
    inside = np.abs(x) <= peak
    err = np.abs(y - x)[inside]
    bound = np.abs(x[inside]) / 32 + 16
    assert np.all(err <= bound)
    assert np.all(np.abs(y[~inside]) == peak)  # beyond the last level: saturates
    t = np.arange(8000) / 8000
    sine = np.rint(30000 * np.sin(2 * np.pi * 1013 * t)).astype(np.int16)
    back = decode(encode(sine)).astype(np.float64)
    snr = 10 * np.log10(np.mean(sine.astype(np.float64) ** 2) / np.mean((back - sine) ** 2))
    assert snr > 35


def test_types_are_checked_and_out_buffers_used():
    """Float input is refused with the fix; out= buffers are filled in place."""
    with pytest.raises(TypeError, match="to_int16"):
        ulaw_encode(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="uint8"):
        alaw_decode(np.zeros(4, np.int16))
    out = np.empty(160, np.uint8)
    assert ulaw_encode(np.zeros(160, np.int16), out=out) is out and np.all(out == 0xFF)
