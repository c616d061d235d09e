"""Published results the report draws beside the study's own fits (docs/methods.md, "References")."""

import numpy as np

from workflow.fit.allocation import allocate
from workflow.fit.approach3 import eq4_allocation, predict_approach3

# Hoffmann et al. 2022's published Approach-3 fit, and Besiroglu et al. 2024's
# (Epoch AI) refit of the same data; both for MassiveText, in nats per token.
HOFFMANN_PUBLISHED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
EPOCH_REFIT = {"E": 1.817, "A": 482.0, "B": 2085.0, "alpha": 0.3478, "beta": 0.3658}
PF_DAY_FLOPS = 8.64e19  # 1e15 FLOP/s for a day
KAPLAN_C_C_PF_DAYS = 2.3e8
REFERENCES = {
    "laws": {
        "Hoffmann et al. 2022 (published)": HOFFMANN_PUBLISHED,
        "Besiroglu et al. 2024 (Epoch AI refit)": EPOCH_REFIT,
    },
    # Kaplan et al. 2020, Figure 1: L(C_min) = (C_min / 2.3e8 PF-days)^-0.050;
    # their eq. 1.3 quotes C_c = 3.1e8 PF-days for the same law.
    "kaplan_frontier": {
        "C_c_pf_days": KAPLAN_C_C_PF_DAYS,
        "C_c_flops": KAPLAN_C_C_PF_DAYS * PF_DAY_FLOPS,
        "alpha_C": 0.050,
        "pf_day_flops": PF_DAY_FLOPS,
        "form": "L(C) = (C / C_c)^-alpha_C, C_c = 2.3e8 PF-days (1 PF-day = 8.64e19 FLOPs)",
        "units": (
            "nats/token on WebText2 with GPT-2's tokenizer; C is non-embedding compute (6 N_non-embedding per token)"
        ),
        "note": "Kaplan et al.'s Figure 1 fit; their eq. 1.3 gives C_c = 3.1e8 PF-days",
    },
    "allocation_exponents": {
        "Kaplan et al. 2020": 0.73,
        "Hoffmann et al. 2022 Approach 1": 0.50,
        "Hoffmann et al. 2022 Approach 2": 0.49,
        "Hoffmann et al. 2022 Approach 3": 0.46,
    },
    "allocation_exponents_b": {
        "Hoffmann et al. 2022 Approach 1": 0.50,
        "Hoffmann et al. 2022 Approach 2": 0.51,
        "Hoffmann et al. 2022 Approach 3": 0.54,
    },
    "allocation_form": "N_opt ∝ C^a, D_opt ∝ C^b",
}


def published_law_at_optimum(law: dict, flops) -> np.ndarray:
    """A published L(N, D) = E + A/N^alpha + B/D^beta at its own compute-optimal allocation (eq. 4)."""
    point = allocate(eq4_allocation(law["alpha"], law["beta"], law["A"], law["B"]), flops)
    return predict_approach3(law, point["n_opt"], point["d_opt"])
