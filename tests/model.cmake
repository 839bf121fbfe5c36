# model: the Phi-3 forward/backward on the CPU backend, against finite differences, transformers
# and itself at other TP degrees.
autotp_test(test_model_grad ${PROJECT_SOURCE_DIR}/tests/test_model_grad.cpp LIBS autotp_model)
autotp_test(test_model_hf ${PROJECT_SOURCE_DIR}/tests/test_model_hf.cpp LIBS autotp_model)
autotp_test(test_model_tp ${PROJECT_SOURCE_DIR}/tests/test_model_tp.cpp RANKS 4 LIBS autotp_model)
