#!/usr/bin/env bash
# The private cluster runs real Open MPI programs the way the search scripts start offnas: a
# heterogeneous job (1 task : 2 tasks on the other node) with one `srun --mpi=pmix
# --het-group=0,1` gives one MPI_COMM_WORLD of 3 ranks whose allreduce is right (two ranks share
# a virtual node: the TaskProlog's per-node shared-memory folder). When slurm.het fails and this
# passes, the cause is in offnas, not in the cluster.
#
#   tests/slurm/cluster.sh tests/slurm/test_mpi.sh BUILD/offnas SOURCE_DIR BUILD/tests/slurm_mpi_hello
#   (ctest: slurm.mpi)
hello=${3:?usage: test_mpi.sh OFFNAS_BINARY SOURCE_DIR MPI_HELLO_BINARY}
source "$(dirname "$0")/lib.sh"

{
  echo '#!/usr/bin/env bash'
  echo '#SBATCH --ntasks=1'
  echo '#SBATCH hetjob'
  echo '#SBATCH --ntasks=2'
  # as slurm/search-het.sbatch does (common.sh's srun_het): the srun of a heterogeneous step
  # with the shim of Slurm's pmix abort-agent race preloaded (docs/slurm.md "Known problem")
  echo "OFFNAS=$offnas OFFNAS_ROOT=$src; script=hello; source $src/slurm/common.sh"
  echo "srun_het --mpi=pmix --het-group=0,1 $hello"
} >"$tmp/hello.sbatch"

id=$(submit --output="$tmp/hello-%j.out" "$tmp/hello.sbatch") || { fail "sbatch" "no job id"; finish; exit; }
if wait_job "$id" 60; then pass "MPI job $id ended"; else fail "MPI job $id ended" "timeout"; fi
out=$tmp/hello-$id.out
if [[ $(job_field "$id" JobState | sort -u) == COMPLETED ]]; then
  pass "COMPLETED"
else
  fail "COMPLETED" "$(job_field "$id" JobState | tr '\n' ' ')"
  show_output "$out"
fi
check "3 ranks in one world, allreduce sum 3" test "$(grep -c '^rank [0-2] of 3 node n[12] sum 3$' "$out")" = 3
nodes=$(sort -k2 -n "$out" | grep -o 'node n[12]' | cut -d' ' -f2 | tr '\n' ' ')
n0=$(job_field "$id" NodeList | head -n 1)
n1=$(job_field "$id" NodeList | tail -n 1)
if [[ $n0 != "$n1" && $nodes == "$n0 $n1 $n1 " ]]; then
  pass "rank 0 on component 0 ($n0), ranks 1-2 on component 1 ($n1)"
else
  fail "ranks in component order on two nodes" "'$nodes' vs $n0 / $n1"
fi

finish
