// A round-robin partition assigner that honours each member's subscription. kafkajs' own
// round-robin deals every topic of the group to every member, so when members of one group
// subscribe to different topics (two registries with different topic prefixes sharing the
// default group id, or a rolling upgrade that adds a topic) some partitions land on members that
// never read them and stall (kafkajs even deals only the leader's own topics). Here a partition only goes to members subscribed to its topic, as
// the Java client's RoundRobinAssignor does.
import { AssignerProtocol, type GroupMemberAssignment, type PartitionAssigner } from 'kafkajs';

export const subscriptionRoundRobin: PartitionAssigner = ({ cluster }) => ({
  name: 'RollcallRoundRobinAssigner',
  version: 0,
  async assign({ members }): Promise<GroupMemberAssignment[]> {
    // kafkajs hands the leader only its own topics: the group's are the union of the members'.
    const subscriptions = new Map<string, Set<string>>();
    const topics = new Set<string>();
    for (const member of members) {
      const metadata = AssignerProtocol.MemberMetadata.decode(member.memberMetadata);
      subscriptions.set(member.memberId, new Set(metadata?.topics ?? []));
      for (const topic of metadata?.topics ?? []) topics.add(topic);
    }
    await cluster.addMultipleTargetTopics([...topics]);
    const memberIds = [...subscriptions.keys()].sort();
    const assignment = new Map<string, Record<string, number[]>>(memberIds.map((id) => [id, {}]));
    // One rotating cursor per group of members (by topic), so load spreads across topics too.
    let turn = 0;
    for (const topic of [...topics].sort()) {
      const readers = memberIds.filter((id) => subscriptions.get(id)?.has(topic));
      if (readers.length === 0) continue;
      for (const partition of cluster.findTopicPartitionMetadata(topic)) {
        const reader = readers[turn++ % readers.length] as string;
        const owned = assignment.get(reader) as Record<string, number[]>;
        (owned[topic] ??= []).push(partition.partitionId);
      }
    }
    return memberIds.map((memberId) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: assignment.get(memberId) ?? {}, userData: Buffer.alloc(0) }),
    }));
  },
  protocol({ topics }) {
    return { name: 'RollcallRoundRobinAssigner', metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
  },
});
