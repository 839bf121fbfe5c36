# slurm/autotp-cpu.sbatch on a real one-node Slurm cluster started on localhost: checkpoint on
# SIGUSR1, requeue, resume, and the uninterrupted run's final loss. Needs root and the Slurm
# packages (tools/setup.sh installs them); without them it fails, saying so.
add_test(NAME slurm_requeue
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/slurm/test_slurm.sh ${PROJECT_SOURCE_DIR}
                 $<TARGET_FILE:autotp-train> ${PROJECT_BINARY_DIR}/slurm_test)
# Serial: its timings (signals after some steps) assume the cores are not shared with other tests.
set_tests_properties(slurm_requeue PROPERTIES TIMEOUT 600 RUN_SERIAL TRUE)
