// Internal to mend::runtime: what ProcessSupervisor (mend/runtime/supervisor.h) reads about a
// running process from /proc, for ProcessStatus. Defined in proc_status.cc.
#ifndef MEND_SRC_RUNTIME_PROC_STATUS_H_
#define MEND_SRC_RUNTIME_PROC_STATUS_H_

#include <cstdint>

namespace mend::runtime_detail {

// The resident memory of process `pid` (VmRSS in /proc/PID/status); 0 when it cannot be read.
std::uint64_t read_rss_bytes(int pid);

}  // namespace mend::runtime_detail

#endif  // MEND_SRC_RUNTIME_PROC_STATUS_H_
