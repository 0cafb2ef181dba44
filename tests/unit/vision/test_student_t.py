"""The SciPy-free Student-t quantile the edge box calibrates with agrees with SciPy's."""

from __future__ import annotations

import pytest
from scipy import stats

from vision.student_t import _t_quantile_by_bisection, t_cdf, t_quantile


@pytest.mark.parametrize("df", [1, 2, 5, 19, 99, 1000])
@pytest.mark.parametrize("q", [0.01, 0.3, 0.5, 0.9, 0.99, 0.999])
def test_bisection_matches_scipy(q: float, df: int) -> None:
    assert _t_quantile_by_bisection(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-9, abs=1e-9)
    assert t_cdf(float(stats.t.ppf(q, df)), df) == pytest.approx(q, abs=1e-10)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="quantile"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.9, 0)
