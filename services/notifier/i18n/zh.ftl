# Chinese: the reference catalog; every message exists here.
ticket-received = 【12345】您的诉求已受理，工单号 { $number }。我们将尽快办理并回复您。
ticket-completed = 【12345】您的工单 { $number } 已办结：{ $result }。
revisit-question = 【12345】工单 { $number } 回访：您对办理结果满意吗？回复 1 满意，回复 2 不满意（可附原因），或打开 { $link }
ticket-assigned = 新工单 { $number }（{ $category }）：{ $text }。地址：{ $address }。市民电话：{ $phone }。办理时限：{ $due }。
ticket-reopened = 返工通知：工单 { $number } 回访不满意，原因：{ $reason }。请重新办理，返工时限：{ $due }。
overdue-reminder = 超时提醒：工单 { $number } 已超过办理时限（{ $due }），请尽快办理。
urging-letter = 催办函：工单 { $number } 再次超时（原时限 { $due }），已转分管领导并列入督办。
leader-urging = 督办通知：工单 { $number } 二次超时（原时限 { $due }），责任单位 { $unit }，已列入督办，请督促办理。
leader-supervised = 督办事项：工单 { $number } 已列入督办，原因：{ $reason }。
desk-completed = 工单 { $number } 已由上级平台办结：{ $result }
desk-returned = 退单：{ $unit } 退回工单 { $number }，原因：{ $reason }。请重新派单。
monthly-summary = 【12345】{ $unit } { $month } 月度办理情况：派单 { $dispatched } 件，办结 { $completed } 件，按时办结率 { $on_time }，满意率 { $satisfaction }，返工 { $reworked } 件，退单 { $returned } 件。
