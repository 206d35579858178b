//! Declaring a stream that exists with other arguments: it is used as it is, and every
//! argument that differs is named with both values, though RabbitMQ's refusal names only
//! the first; a queue of another kind by the stream's name is an error.

use std::time::Duration;

use hookwire_amqp::lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use hookwire_amqp::lapin::types::FieldTable;
use hookwire_amqp::stream::{self, Declared, Difference};
use hookwire_amqp::{Error, connect};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DAY: Duration = Duration::from_secs(86_400);

fn difference(argument: &str, current: Option<&str>, asked: Option<&str>) -> Difference {
    Difference {
        argument: argument.into(),
        asked: asked.map(Into::into),
        current: current.map(Into::into),
    }
}

#[tokio::test]
async fn a_stream_with_other_arguments_is_used_as_it_is_and_each_difference_named() {
    let connection = connect(URL, "hookwire-test-streams").await.expect("broker");
    let name = format!("hookwire-test-streams-{}", uuid::Uuid::now_v7());
    // Made with one day and no byte bound; asked for a week and 1 GiB: two differences.
    let made = stream::arguments(Some(DAY), None);
    assert_eq!(
        stream::declare_on(&connection, &name, made.clone())
            .await
            .expect("made"),
        Declared::AsAsked
    );
    let asked = stream::bounded_arguments(Some(7 * DAY), Some(1 << 30), None);
    let declared = stream::declare_on(&connection, &name, asked).await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("deleted");
    let Ok(Declared::AsFound(mut differences)) = declared else {
        panic!("used as it is: {declared:?}");
    };
    differences.sort_by(|a, b| a.argument.cmp(&b.argument));
    assert_eq!(
        differences,
        [
            difference("x-max-age", Some("86400s"), Some("604800s")),
            difference("x-max-length-bytes", None, Some("1073741824")),
        ]
    );
    assert_eq!(
        differences[1].to_string(),
        "x-max-length-bytes is none, not 1073741824"
    );

    // A classic queue by the stream's name is not a stream: refused, with the reason.
    let classic = format!("{name}-classic");
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(classic.as_str().into(), options, FieldTable::default())
        .await
        .expect("a classic queue");
    let refused = stream::declare_on(&connection, &classic, made).await;
    channel
        .queue_delete(classic.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("deleted");
    let Err(Error::Amqp(refused)) = refused else {
        panic!("a classic queue is refused: {refused:?}");
    };
    assert!(refused.to_string().contains("x-queue-type"), "{refused}");
    let _ = connection.close(200, "done".into()).await;
}
