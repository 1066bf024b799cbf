// A task as the store keeps it: the row written before it runs, the write that ends it (with its
// journal entry), and the way back from a stored row to a task after a restart. Pure functions.
#ifndef MEND_SERVER_TASK_ROWS_H_
#define MEND_SERVER_TASK_ROWS_H_

#include <string>

#include "mend/core/store.h"
#include "mend/core/workflow.h"
#include "mend/server/config.h"

namespace mend::server_detail {

// The task's type is in tasks.idempotent_types: a call in flight at a crash may be sent again.
bool idempotent_type(const TasksConfig& tasks, const std::string& type);
// The task as the store keeps it to run it again: what the API parsed, not the client's bytes.
std::string task_request_json(const Task& task);
// The row stored when a task is accepted, before it runs.
StoredTask stored_running_task(const Task& task, const std::string& key, const std::string& digest,
                               WallTime now);
// A stored running task to run again, or an error saying why it cannot be.
Result<Task> task_from_stored(const StoredTask& stored);
// The write that ends a task: its outcome, and (when the task is known) its journal entry, which
// the store writes in the same transaction.
TaskWrite finish_write(const std::string& id, const Task* task, const Outcome& outcome,
                       int attempts, WallTime now);
// The final outcome of a task mend did not run again after a restart.
Outcome interrupted_outcome(const StoredTask& stored, const std::string& why);

}  // namespace mend::server_detail

#endif  // MEND_SERVER_TASK_ROWS_H_
