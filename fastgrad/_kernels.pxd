# The constants of _constants.h, declared once for Cython. The modes, paths and
# rules are cpdef: Python reads them as fastgrad._kernels.MODE_PROBA, ...
cdef extern from "_constants.h":
    cpdef enum:   # enum fastgrad_mode
        MODE_PROBA "FASTGRAD_MODE_PROBA"
        MODE_LOSS "FASTGRAD_MODE_LOSS"
        MODE_GRAD "FASTGRAD_MODE_GRAD"
        MODE_UPDATE "FASTGRAD_MODE_UPDATE"

    cpdef enum:   # enum fastgrad_path
        PATH_DENSE "FASTGRAD_PATH_DENSE"
        PATH_FACTORED "FASTGRAD_PATH_FACTORED"

    cpdef enum:   # enum fastgrad_rule_kind
        RULE_SGD "FASTGRAD_RULE_SGD"
        RULE_MOMENTUM "FASTGRAD_RULE_MOMENTUM"
        RULE_ADAGRAD "FASTGRAD_RULE_ADAGRAD"
        RULE_ADAM "FASTGRAD_RULE_ADAM"

    cdef enum fastgrad_phase:
        PHASE_GATHER "FASTGRAD_PHASE_GATHER"
        PHASE_FIRST_PRODUCTS "FASTGRAD_PHASE_FIRST_PRODUCTS"
        PHASE_FIRST_SUMS "FASTGRAD_PHASE_FIRST_SUMS"
        PHASE_OUTPUT_PRODUCT "FASTGRAD_PHASE_OUTPUT_PRODUCT"
        PHASE_SOFTMAX "FASTGRAD_PHASE_SOFTMAX"
        PHASE_MASK_BACKWARD "FASTGRAD_PHASE_MASK_BACKWARD"
        PHASE_DU "FASTGRAD_PHASE_DU"
        PHASE_SEGMENT_SUMS "FASTGRAD_PHASE_SEGMENT_SUMS"
        PHASE_DW_DL "FASTGRAD_PHASE_DW_DL"
        PHASE_GROUP_DL "FASTGRAD_PHASE_GROUP_DL"
        PHASE_UPDATE_L "FASTGRAD_PHASE_UPDATE_L"
        PHASE_UPDATE_DENSE "FASTGRAD_PHASE_UPDATE_DENSE"
        N_PHASES "FASTGRAD_N_PHASES"
    const char* const fastgrad_phase_names[]

